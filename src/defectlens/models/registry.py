"""Detectors register themselves by name; the CLI, configs and checkpoints resolve names only here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from defectlens.errors import ConfigError

if TYPE_CHECKING:
    from defectlens.models.base import Detector

_REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound="type[Detector]")


def register(name: str) -> Callable[[D], D]:
    """Class decorator that makes a detector available as `create(name)`."""

    def decorate(cls: D) -> D:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"detector name '{name}' is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_detectors() -> list[str]:
    """Names of every registered detector, sorted."""
    _import_builtin()
    return sorted(_REGISTRY)


def detector_class(name: str) -> type[Detector]:
    """The class registered as `name`; an unknown name lists the valid ones."""
    _import_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; available models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, **params: Any) -> Detector:
    """Build detector `name` with hyper-parameters `params`; `None` values keep the defaults."""
    cls = detector_class(name)
    valid = cls.param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"model '{name}' has no setting {unknown}; its settings are {sorted(valid)}")
    return cls(**{k: v for k, v in params.items() if v is not None})


def _import_builtin() -> None:
    # Importing the model packages runs their @register decorators.
    import defectlens.models.autoencoder  # noqa: F401
    import defectlens.models.gan  # noqa: F401
    import defectlens.models.padim  # noqa: F401
    import defectlens.models.patchcore  # noqa: F401
    import defectlens.models.stfpm  # noqa: F401
