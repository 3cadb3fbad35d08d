"""Audio thresholds: the image calibration code on held-out normal clips; checkpoints old and new."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from defectlens import __version__
from defectlens.audio.features import load_features
from defectlens.audio.models import create, load_audio_detector
from defectlens.errors import CheckpointError, ConfigError
from defectlens.post.threshold import FalseRejectThreshold, FixedThreshold, ThresholdPolicy

from .conftest import TINY_MODELS

FAST = {**TINY_MODELS["dcase-baseline-ae"], "max_epochs": 1, "calibration_fraction": 0.5}
SETTINGS_BEFORE_CALIBRATION = {"threshold_policy", "false_reject_rate", "recall", "calibration_fraction"}


@pytest.fixture(scope="module")
def fitted(tiny_train_clips):
    return create("dcase-baseline-ae", **FAST).fit(tiny_train_clips)


def test_threshold_comes_from_the_image_calibration_on_held_out_scores(fitted):
    held_out_scores = fitted.score_clips(fitted.held_out_clips_).clip_scores
    zeros = np.zeros(len(held_out_scores), dtype=int)
    image_threshold = ThresholdPolicy().image_threshold(held_out_scores, zeros)
    assert type(fitted.calibration_) is type(image_threshold) is FalseRejectThreshold
    assert fitted.threshold_ == fitted.policy().image_threshold(held_out_scores, zeros).value_
    point = fitted.operating_point()
    assert point["policy"] == "false_reject_rate" and point["rate"] == 0.01 and point["n_good"] == 3
    assert point["scores_from"] == "held-out split (3 of 6 clips)" and point["threshold"] == fitted.threshold_


def test_held_out_clips_are_not_trained_on(tiny_train_clips, monkeypatch):
    detector = create("dcase-baseline-ae", **FAST)
    trained_on = []
    fit_features = detector._fit_features

    def recording_fit(spectrograms, context):
        trained_on.extend(spectrograms)
        return fit_features(spectrograms, context)

    monkeypatch.setattr(detector, "_fit_features", recording_fit)
    detector.fit(tiny_train_clips)
    kept, held_out = detector.training_clips_, detector.held_out_clips_
    assert set(kept).isdisjoint(held_out) and sorted(kept + held_out) == sorted(tiny_train_clips)
    expected = load_features(kept, detector.feature_settings, None, detector.window_frames)
    assert len(trained_on) == len(kept) == 3
    assert all(np.array_equal(a, b) for a, b in zip(trained_on, expected, strict=True))


def test_a_single_clip_is_calibrated_in_sample_with_a_warning(tiny_train_clips, caplog):
    with caplog.at_level(logging.WARNING):
        detector = create("dcase-baseline-ae", **FAST).fit(tiny_train_clips[:1])
    assert detector.held_out_clips_ == [] and "no clip held out for calibration" in caplog.text
    assert detector.operating_point()["scores_from"] == "in-sample training clips (1)"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"threshold_policy": "recall"}, "needs labelled anomalous clips"),
        ({"false_reject_rate": 0.7}, "false_reject_rate must be in"),
        ({"calibration_fraction": 1.0}, "calibration_fraction must be a number in \\[0, 1\\), got 1.0"),
    ],
)
def test_bad_calibration_settings_are_refused_before_training(tiny_train_clips, setting, message):
    with pytest.raises(ConfigError, match=message):
        create("dcase-baseline-ae", **{**FAST, **setting}).fit(tiny_train_clips)


def test_save_load_keeps_the_calibration(fitted, tmp_path):
    loaded = load_audio_detector(fitted.save(tmp_path / "ae.pt"))
    assert loaded.calibration_.to_dict() == fitted.calibration_.to_dict()
    assert loaded.operating_point() == fitted.operating_point()


def test_an_old_checkpoint_keeps_its_in_sample_threshold(fitted, tiny_test_clips, tmp_path, caplog):
    params = {k: v for k, v in fitted.get_params().items() if k not in SETTINGS_BEFORE_CALIBRATION}
    old = {
        "format_version": 1,
        "defectlens_version": __version__,
        "kind": "audio_detector",
        "detector": fitted.name,
        "params": {**params, "threshold_quantile": 0.9},
        "state_dict": fitted.module_.state_dict(),
        "threshold": 0.125,
    }
    torch.save(old, tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING):
        loaded = load_audio_detector(tmp_path / "old.pt")
    assert "in-sample training scores" in caplog.text
    assert isinstance(loaded.calibration_, FixedThreshold) and loaded.threshold_ == 0.125
    point = loaded.operating_point()
    assert point["policy"] == "fixed" and point["n_good"] == 0
    assert point["calibration_false_reject_rate"] is point["guaranteed_false_reject_rate"] is None
    np.testing.assert_allclose(
        loaded.score_clips(tiny_test_clips).clip_scores, fitted.score_clips(tiny_test_clips).clip_scores
    )


def test_weights_that_do_not_fit_the_settings_name_the_file(fitted, tmp_path):
    checkpoint = torch.load(fitted.save(tmp_path / "ae.pt"), weights_only=True)
    checkpoint["params"]["hidden_units"] = 8
    torch.save(checkpoint, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="mismatch.pt: the saved weights do not fit"):
        load_audio_detector(tmp_path / "mismatch.pt")
