"""Detectors register themselves by name where they are defined (`@register`); the CLI, configs and
checkpoints resolve names, and `load` rebuilds checkpoints, only here."""

from __future__ import annotations

from defectlens.models.base import CHECKPOINT_KIND, Detector
from defectlens.registry import Registry

# Checkpoints written before the kind was recorded hold image detectors only.
_DETECTORS: Registry[type[Detector]] = Registry(
    "model", package="defectlens.models", checkpoint_kind=CHECKPOINT_KIND, accept_unmarked=True
)

register = _DETECTORS.register
list_detectors = _DETECTORS.names  # every registered name, sorted
detector_class = _DETECTORS.get  # the class registered as a name; an unknown one lists the valid ones
create = _DETECTORS.create  # build a detector by name from settings
load = _DETECTORS.load  # a fitted detector from a checkpoint written by Detector.save
