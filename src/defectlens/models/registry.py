"""Detectors register themselves by name; the CLI, configs and checkpoints resolve names only here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from defectlens.registry import Registry

if TYPE_CHECKING:
    from defectlens.models.base import Detector

_DETECTORS: Registry = Registry(
    "model",
    builtin=[
        f"defectlens.models.{family}" for family in ("autoencoder", "gan", "padim", "patchcore", "stfpm")
    ],
)

register = _DETECTORS.register


def list_detectors() -> list[str]:
    """Names of every registered detector, sorted."""
    return _DETECTORS.names()


def detector_class(name: str) -> type[Detector]:
    """The class registered as `name`; an unknown name lists the valid ones."""
    return _DETECTORS.get(name)


def create(name: str, **params: Any) -> Detector:
    """Build detector `name` with hyper-parameters `params`; `None` values keep the defaults."""
    return _DETECTORS.create(name, **params)
