"""Audio loading (channels, resampling, bad files) and the log-mel feature cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile

from defectlens.audio.features import FeatureCache, LogMelSettings, load_audio, load_features, log_mel
from defectlens.errors import ConfigError, DataError

from .conftest import RATE, TINY_FEATURES, machine_sound

SETTINGS = LogMelSettings(**TINY_FEATURES)


def test_channel_choice_and_downmix(tmp_path):
    left, right = machine_sound(0), machine_sound(1)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, RATE, channel=1), right)
    np.testing.assert_allclose(load_audio(path, RATE), (left + right) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="channel 2 does not exist.*2 channel"):
        load_audio(path, RATE, channel=2)


def test_other_rates_are_resampled(tmp_path):
    path = tmp_path / "fast.wav"
    t = np.arange(16000) / 16000
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 16000)
    wave = load_audio(path, RATE)
    assert wave.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.fft.rfftfreq(wave.size, 1 / RATE)[spectrum.argmax()] == pytest.approx(1000, abs=2)


def test_log_mel_shape_and_top_db():
    features = log_mel(machine_sound(0), SETTINGS)
    assert features.shape == (16, RATE // 64 + 1) and features.dtype == np.float32
    clipped = log_mel(machine_sound(0), LogMelSettings(**TINY_FEATURES, top_db=20.0))
    assert clipped.max() - clipped.min() == pytest.approx(20.0, abs=1e-3)


def test_non_audio_empty_and_too_short_clips_are_named(tmp_path):
    text = tmp_path / "normal_id_00_00000000.wav"
    text.write_text("not audio")
    with pytest.raises(DataError, match="cannot read audio file .*normal_id_00_00000000.wav"):
        load_audio(text, RATE)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), RATE)
    with pytest.raises(DataError, match="empty.wav holds no samples"):
        load_audio(empty, RATE)
    short = tmp_path / "short.wav"
    soundfile.write(short, machine_sound(0, seconds=0.05), RATE)
    with pytest.raises(DataError, match="short.wav is too short: 7 frames .* at least 16 frames"):
        load_features([short], SETTINGS, min_frames=16)
    with pytest.raises(DataError, match="not found"):
        load_audio(tmp_path / "missing.wav", RATE)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="n_mels must be <= n_fft"):
        LogMelSettings(n_fft=64, n_mels=128).check()
    with pytest.raises(ConfigError, match="hop_length must be a positive integer"):
        LogMelSettings(hop_length=0).check()


def test_cache_hits_on_the_second_load_and_misses_after_an_edit(tmp_path, tiny_train_clips):
    cache = FeatureCache(tmp_path / "cache")
    first = load_features(tiny_train_clips[:2], SETTINGS, cache)
    assert (cache.hits, cache.misses) == (0, 2)
    again = FeatureCache(tmp_path / "cache")  # a second run
    second = load_features(tiny_train_clips[:2], SETTINGS, again)
    assert (again.hits, again.misses) == (2, 0)
    np.testing.assert_array_equal(first[0], second[0])
    load_features(tiny_train_clips[:1], LogMelSettings(**{**TINY_FEATURES, "n_mels": 8}), again)
    assert again.misses == 1  # other settings, other entry

    edited = tmp_path / "normal_id_00_00000099.wav"
    soundfile.write(edited, machine_sound(5), RATE)
    load_features([edited], SETTINGS, again)
    soundfile.write(edited, machine_sound(6), RATE)
    os.utime(edited, ns=(1, 1))  # a different mtime even on coarse clocks
    load_features([edited], SETTINGS, again)
    assert again.misses == 3
