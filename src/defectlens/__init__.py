"""defectlens: find defects without defect labels.

Learn what good looks like from good images only, then score, localise and report what departs from it.
"""

__version__ = "0.1.0"

from defectlens.data import DataSplits, Record, load_elpv, load_folder, load_mvtec  # noqa: E402
from defectlens.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    DefectlensError,
    NotFittedError,
    WeightsError,
)
from defectlens.models import Detector, Prediction, create, list_detectors, load  # noqa: E402

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataSplits",
    "DefectlensError",
    "Detector",
    "NotFittedError",
    "Prediction",
    "Record",
    "WeightsError",
    "__version__",
    "create",
    "list_detectors",
    "load",
    "load_elpv",
    "load_folder",
    "load_mvtec",
]
