"""Audio detectors register themselves by name; the CLI and checkpoints resolve names only here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from defectlens.errors import ConfigError

if TYPE_CHECKING:
    from defectlens.audio.models.base import AudioDetector

_REGISTRY: dict[str, type[AudioDetector]] = {}
D = TypeVar("D", bound="type[AudioDetector]")


def register(name: str) -> Callable[[D], D]:
    """Class decorator that makes an audio detector available as `create(name)`."""

    def decorate(cls: D) -> D:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"audio detector '{name}' is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_audio_detectors() -> list[str]:
    """Names of every registered audio detector, sorted."""
    _import_builtin()
    return sorted(_REGISTRY)


def audio_detector_class(name: str) -> type[AudioDetector]:
    """The class registered as `name`; an unknown name lists the valid ones."""
    _import_builtin()
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown audio model '{name}'; available audio models: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def create(name: str, **params: Any) -> AudioDetector:
    """Build audio detector `name` with hyper-parameters `params`; `None` values keep the defaults."""
    cls = audio_detector_class(name)
    valid = cls.param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"audio model '{name}' has no setting {unknown}; its settings are {sorted(valid)}")
    return cls(**{k: v for k, v in params.items() if v is not None})


def _import_builtin() -> None:
    # Importing the model modules runs their @register decorators.
    import defectlens.audio.models.aegan  # noqa: F401
    import defectlens.audio.models.dense_ae  # noqa: F401
