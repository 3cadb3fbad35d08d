"""PatchCore on several backbones: features side by side on one grid, one bank; saved, loaded, exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlens.backbones import FeatureExtractor, feature_extractor
from defectlens.data import load_mvtec
from defectlens.errors import ConfigError
from defectlens.export import export_detector
from defectlens.inference import Inferencer
from defectlens.models import create, load

TINY = {"image_size": 64, "batch_size": 4, "device": "cpu"}
PAIR = ("tf_efficientnet_lite0", "tf_efficientnet_lite2")


def test_ensemble_features_are_its_members_in_order():
    ensemble = feature_extractor(PAIR, (2, 3), None)
    images = torch.rand(2, 3, 64, 48)
    features = ensemble(images)
    assert ensemble.channels == [40, 112, 48, 120] and ensemble.strides == [8, 16, 8, 16]
    torch.testing.assert_close(features[3], FeatureExtractor(PAIR[1], (2, 3))(images)[1])


def test_ensemble_fits_one_bank_and_round_trips_through_save_and_export(tiny_mvtec, tmp_path):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = create("patchcore", backbone=PAIR, **TINY).fit(splits)
    assert detector.tile_module_.memory_bank.shape[1] == 40 + 112 + 48 + 120
    reference = detector.predict(splits.test)
    detector.save(tmp_path / "model.pt")
    np.testing.assert_allclose(
        load(tmp_path / "model.pt").predict(splits.test).score, reference.score, atol=1e-5
    )
    exported = Inferencer(export_detector(detector, tmp_path / "onnx", "onnx")).predict(splits.test)
    assert np.abs(exported.score - reference.score).max() < 1e-3


def test_ensemble_settings_are_checked():
    with pytest.raises(ConfigError, match="weights must list one file \\(or None\\) per backbone"):
        feature_extractor(PAIR, (2, 3), "lite0.pth")
    with pytest.raises(ConfigError, match="backbone must be a non-empty string or a list of at least 2"):
        create("patchcore", backbone=("tf_efficientnet_lite0",)).check_params()
