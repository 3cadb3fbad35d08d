"""Detectors: one package per model family, all behind the `Detector` interface."""

from defectlens.models.base import Detector
from defectlens.models.registry import create, detector_class, list_detectors, load, register
from defectlens.post.prediction import Prediction

__all__ = ["Detector", "Prediction", "create", "detector_class", "list_detectors", "load", "register"]
