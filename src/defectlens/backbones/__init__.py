"""Pretrained feature extractors with offline weights."""

from defectlens.backbones.extractor import (
    BACKBONE_SETTINGS,
    DEFAULT_BACKBONE,
    ENSEMBLE_SETTINGS,
    BackboneEnsemble,
    FeatureExtractor,
    describe_layers,
    feature_extractor,
    locally_aware_patches,
)
from defectlens.backbones.weights import PACKAGED_WEIGHTS, how_to_get_weights, load_pretrained

__all__ = [
    "BACKBONE_SETTINGS",
    "DEFAULT_BACKBONE",
    "ENSEMBLE_SETTINGS",
    "PACKAGED_WEIGHTS",
    "BackboneEnsemble",
    "FeatureExtractor",
    "describe_layers",
    "feature_extractor",
    "how_to_get_weights",
    "load_pretrained",
    "locally_aware_patches",
]
