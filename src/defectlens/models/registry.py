"""Detectors register themselves by name where they are defined; the CLI, configs and checkpoints resolve
names, and `load` rebuilds checkpoints, only here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from defectlens.core.checkpoint import read_checkpoint
from defectlens.models.base import CHECKPOINT_KIND, Detector
from defectlens.registry import Registry

_DETECTORS: Registry = Registry("model", package="defectlens.models")

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


def load(path: str | Path) -> Detector:
    """Rebuild a fitted detector from a checkpoint written by `Detector.save`.

    Raises:
        CheckpointError: the file is missing, unreadable, not an image detector checkpoint, of a newer
            format, or its weights do not fit its settings.
    """
    # Checkpoints written before the kind was recorded hold image detectors only.
    checkpoint = read_checkpoint(path, CHECKPOINT_KIND, accept_unmarked=True)
    return detector_class(checkpoint["detector"]).from_checkpoint(checkpoint, path)
