"""Pretrained feature extractors with offline weights."""

from defectlens.backbones.extractor import (
    BACKBONE_SETTINGS,
    DEFAULT_BACKBONE,
    FeatureExtractor,
    describe_layers,
)
from defectlens.backbones.weights import PACKAGED_WEIGHTS, how_to_get_weights, load_pretrained

__all__ = [
    "BACKBONE_SETTINGS",
    "DEFAULT_BACKBONE",
    "PACKAGED_WEIGHTS",
    "FeatureExtractor",
    "describe_layers",
    "how_to_get_weights",
    "load_pretrained",
]
