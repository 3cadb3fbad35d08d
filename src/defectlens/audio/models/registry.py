"""Audio detectors register themselves by name where they are defined; the CLI and checkpoints resolve
names, and `load_audio_detector` rebuilds checkpoints, only here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectlens.audio.models.base import CHECKPOINT_KIND, AudioDetector
from defectlens.core.checkpoint import read_checkpoint
from defectlens.registry import Registry

_AUDIO_DETECTORS: Registry = Registry("audio model", package="defectlens.audio.models")

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


def load_audio_detector(path: str | Path, device: str = "cpu") -> AudioDetector:
    """Rebuild a fitted detector from a checkpoint written by `AudioDetector.save`.

    Raises:
        CheckpointError: the file is missing, unreadable, not an audio detector checkpoint, of a newer
            format, or its weights do not fit its settings.
    """
    checkpoint = read_checkpoint(path, CHECKPOINT_KIND)
    return audio_detector_class(checkpoint["detector"]).from_checkpoint(checkpoint, path, device)
