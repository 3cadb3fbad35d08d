"""Exceptions raised by defectlens. Every message names the path or setting at fault."""


class DefectlensError(Exception):
    """Base class of every error defectlens raises on purpose."""


class DataError(DefectlensError):
    """A dataset layout or an image file is missing, empty or unreadable."""


class ImageTooLarge(DataError):
    """An image has more pixels than the configured limit."""


class ConfigError(DefectlensError, ValueError):
    """A setting has a value outside what is allowed."""


class WeightsError(DefectlensError):
    """Pretrained backbone weights cannot be found or do not fit the backbone."""


class NotFittedError(DefectlensError):
    """A detector was used before `fit` was called."""


class CheckpointError(DefectlensError):
    """A checkpoint or run folder is missing, corrupt or of another kind."""
