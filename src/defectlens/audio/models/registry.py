"""Audio detectors register themselves by name; the CLI and checkpoints resolve names only here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from defectlens.registry import Registry

if TYPE_CHECKING:
    from defectlens.audio.models.base import AudioDetector

_AUDIO_DETECTORS: Registry = Registry(
    "audio model", builtin=["defectlens.audio.models.aegan", "defectlens.audio.models.dense_ae"]
)

register = _AUDIO_DETECTORS.register


def list_audio_detectors() -> list[str]:
    """Names of every registered audio detector, sorted."""
    return _AUDIO_DETECTORS.names()


def audio_detector_class(name: str) -> type[AudioDetector]:
    """The class registered as `name`; an unknown name lists the valid ones."""
    return _AUDIO_DETECTORS.get(name)


def create(name: str, **params: Any) -> AudioDetector:
    """Build audio detector `name` with hyper-parameters `params`; `None` values keep the defaults."""
    return _AUDIO_DETECTORS.create(name, **params)
