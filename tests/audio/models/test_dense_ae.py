"""The DCASE 2020 baseline autoencoder: architecture, stacked frames, scores, round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from defectlens.audio.models import create, load_audio_detector
from defectlens.audio.models.dense_ae import DenseAutoencoder, stack_frames

from ..conftest import TINY_MODELS


def test_baseline_architecture_is_640_128x4_8_128x4_640():
    model = DenseAutoencoder(640, 128, 8, 4)
    widths = [layer.out_features for layer in model.net if isinstance(layer, nn.Linear)]
    assert widths == [128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    assert sum(isinstance(layer, nn.BatchNorm1d) for layer in model.net) == 9
    assert model.eval()(torch.randn(3, 640)).shape == (3, 640)


def test_frames_are_stacked_one_after_another():
    windows = torch.arange(3 * 5).reshape(1, 3, 5).float().repeat(2, 1, 1)  # (B, n_mels=3, frames=5)
    vectors = stack_frames(windows)
    assert vectors.shape == (2, 15)
    assert vectors[0, :3].tolist() == windows[0, :, 0].tolist()  # first frame's mel bands first


@pytest.fixture(scope="module")
def fitted(tiny_train_clips):
    return create("dcase-baseline-ae", **TINY_MODELS["dcase-baseline-ae"]).fit(tiny_train_clips)


def test_scores_are_the_mean_of_window_errors(fitted, tiny_test_clips):
    scores = fitted.score_clips(tiny_test_clips)
    assert list(scores.all_scores) == ["mse_mean"]
    assert [len(f) for f in scores.frame_scores] == [126 - 5 + 1] * 6
    assert scores.clip_scores[0] == pytest.approx(scores.frame_scores[0].mean())
    assert np.isfinite(fitted.threshold_) and len(fitted.history_) == 3


def test_save_load_gives_identical_scores(fitted, tiny_test_clips, tmp_path):
    loaded = load_audio_detector(fitted.save(tmp_path / "ae.pt"))
    np.testing.assert_allclose(
        fitted.score_clips(tiny_test_clips).clip_scores,
        loaded.score_clips(tiny_test_clips).clip_scores,
        rtol=1e-6,
    )
