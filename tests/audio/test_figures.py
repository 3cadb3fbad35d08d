"""The spectrogram-and-score picture."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.audio.figures import save_clip_scores
from defectlens.errors import ConfigError


def test_picture_is_written(tmp_path):
    spectrogram = np.random.default_rng(0).normal(size=(16, 100))
    times = np.linspace(0.1, 0.9, 20)
    path = save_clip_scores(spectrogram, 0.01, times, np.sin(times), 0.5, tmp_path / "a" / "clip.png", "clip")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_mismatched_inputs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="3 window times but 2 window scores"):
        save_clip_scores(np.zeros((4, 10)), 0.01, np.zeros(3), np.zeros(2), None, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="must be \\(n_mels, T\\)"):
        save_clip_scores(np.zeros(10), 0.01, np.zeros(2), np.zeros(2), None, tmp_path / "x.png")
