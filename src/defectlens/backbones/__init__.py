"""Pretrained feature extractors with offline weights."""

from defectlens.backbones.extractor import (
    BACKBONE_WEIGHTS,
    BACKBONES,
    DEFAULT_BACKBONE,
    BackboneEnsemble,
    BackboneSettings,
    FeatureExtractor,
    describe_layers,
    feature_extractor,
    locally_aware_patches,
)
from defectlens.backbones.weights import PACKAGED_WEIGHTS, how_to_get_weights, load_pretrained

__all__ = [
    "BACKBONES",
    "BACKBONE_WEIGHTS",
    "DEFAULT_BACKBONE",
    "PACKAGED_WEIGHTS",
    "BackboneEnsemble",
    "BackboneSettings",
    "FeatureExtractor",
    "describe_layers",
    "feature_extractor",
    "how_to_get_weights",
    "load_pretrained",
    "locally_aware_patches",
]
