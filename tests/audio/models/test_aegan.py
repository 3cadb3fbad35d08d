"""AEGAN-AD: module shapes, losses, every detection score, checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlens.audio.models import create, load_audio_detector
from defectlens.audio.models.aegan import SCORE_NAMES, Critic, Generator, feature_matching, gradient_penalty
from defectlens.errors import ConfigError

from ..conftest import TINY_MODELS


@pytest.mark.parametrize(("size", "width", "channels"), [(16, 4, 8), (32, 4, 16), (128, 32, 512)])
def test_generator_and_critic_shapes(size, width, channels):
    x = torch.rand(3, 1, size, size) * 2 - 1
    generator, critic = Generator(size, width, latent_dim=10), Critic(size, width)
    assert generator.encode(x).shape == (3, 10)
    recon = generator(x)
    assert recon.shape == x.shape and recon.abs().max() <= 1
    values, embedding = critic(x)
    assert values.shape == (3,) and embedding.shape == (3, channels)


def test_losses_are_finite_and_penalise_what_they_should():
    critic = Critic(16, 4)
    real, fake = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    assert torch.isfinite(gradient_penalty(critic, real, fake))
    features = torch.randn(8, 5)
    assert feature_matching(features, features, 1.0, 1.0) == 0
    shifted = features + 2.0  # mean moves by 2 in every dimension, the spread stays
    assert feature_matching(features, shifted, 1.0, 0.0) == pytest.approx(4.0)
    assert feature_matching(features, shifted, 0.0, 1.0) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def fitted(tiny_train_clips):
    return create("aegan-ad", **TINY_MODELS["aegan-ad"]).fit(tiny_train_clips)


def test_every_detection_score_runs(fitted, tiny_test_clips):
    scores = fitted.score_clips(tiny_test_clips)
    assert set(scores.all_scores) == set(SCORE_NAMES) and len(SCORE_NAMES) == 17
    for name, values in scores.all_scores.items():
        assert values.shape == (6,) and np.isfinite(values).all(), name
    n_windows = (126 - 16) // 4 + 1  # 1 s at hop 64 gives 126 frames; 16-frame patches every 4
    assert [len(f) for f in scores.frame_scores] == [n_windows] * 6
    np.testing.assert_allclose(scores.clip_scores, scores.all_scores["d_lof"])
    assert scores.window_times(0)[0] == pytest.approx(8 * 64 / 8000)


@pytest.mark.parametrize("score", ["gx_l2_max", "gz_cos_min", "d_knn"])
def test_the_selected_score_drives_clip_and_frame_scores(fitted, tiny_test_clips, score):
    detector = create("aegan-ad", **{**TINY_MODELS["aegan-ad"], "score": score})
    detector.module_, detector.calibration_ = fitted.module_, fitted.calibration_
    detector._prepare()
    scores = detector.score_clips(tiny_test_clips[:2])
    np.testing.assert_allclose(scores.clip_scores, scores.all_scores[score])
    if score.endswith("_max"):
        assert scores.clip_scores[0] == pytest.approx(scores.frame_scores[0].max())


def test_save_load_gives_identical_scores(fitted, tiny_test_clips, tmp_path):
    path = fitted.save(tmp_path / "aegan.pt")
    loaded = load_audio_detector(path)
    before, after = fitted.score_clips(tiny_test_clips), loaded.score_clips(tiny_test_clips)
    for name in SCORE_NAMES:
        np.testing.assert_allclose(before.all_scores[name], after.all_scores[name], rtol=1e-6, err_msg=name)
    assert loaded.threshold_ == fitted.threshold_ and loaded.get_params() == fitted.get_params()


def test_history_records_the_three_losses(fitted):
    assert len(fitted.history_) == 2 and {"critic", "recon", "match"} <= set(fitted.history_[0])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"n_mels": 24}, "power of two"),
        ({"score": "g_x"}, "score must be one of"),
        ({"patch_hop": 0}, "patch_hop"),
    ],
)
def test_bad_settings_are_named(tiny_train_clips, setting, message):
    with pytest.raises(ConfigError, match=message):
        create("aegan-ad", **{**TINY_MODELS["aegan-ad"], **setting}).fit(tiny_train_clips)
