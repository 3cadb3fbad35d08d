"""Tiny generated DCASE-style clips: a humming machine (normal) and the same with a rattle (anomalous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

RATE = 8000
# Feature and model settings sized for unit tests: 16 mel bands, so AEGAN-AD patches are 16 x 16.
TINY_FEATURES = {"sample_rate": RATE, "n_fft": 256, "hop_length": 64, "n_mels": 16}
TINY_MODELS = {
    "aegan-ad": {
        **TINY_FEATURES,
        "patch_hop": 4,
        "latent_dim": 8,
        "generator_width": 4,
        "critic_width": 4,
        "batch_size": 32,
        "max_epochs": 2,
        "device": "cpu",
    },
    "dcase-baseline-ae": {
        **TINY_FEATURES,
        "hidden_units": 16,
        "batch_size": 64,
        "max_epochs": 3,
        "device": "cpu",
    },
}


def machine_sound(seed: int, seconds: float = 1.0, rate: int = RATE, anomalous: bool = False) -> np.ndarray:
    """A 440 Hz hum with noise; anomalous clips add rattling 2 kHz bursts in the second half."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    sound = 0.3 * np.sin(2 * np.pi * 440 * t + rng.uniform(0, 6)) + 0.03 * rng.normal(size=t.size)
    if anomalous:
        bursts = (np.sin(2 * np.pi * 6 * t) > 0) & (t > seconds / 2)
        sound += 0.3 * bursts * np.sin(2 * np.pi * 2000 * t)
    return sound.astype(np.float32)


@pytest.fixture(scope="session")
def tiny_dcase(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/fan/train: 6 normal clips; <root>/fan/test: 3 normal + 3 anomalous (DCASE 2020 names)."""
    root = tmp_path_factory.mktemp("tiny_dcase")
    train, test = root / "fan" / "train", root / "fan" / "test"
    train.mkdir(parents=True)
    test.mkdir(parents=True)
    for i in range(6):
        soundfile.write(train / f"normal_id_00_{i:08d}.wav", machine_sound(i), RATE)
    for i in range(3):
        soundfile.write(test / f"normal_id_00_{i:08d}.wav", machine_sound(100 + i), RATE)
        soundfile.write(test / f"anomaly_id_00_{i:08d}.wav", machine_sound(200 + i, anomalous=True), RATE)
    return root


@pytest.fixture(scope="session")
def tiny_train_clips(tiny_dcase: Path) -> list[Path]:
    return sorted((tiny_dcase / "fan" / "train").glob("*.wav"))


@pytest.fixture(scope="session")
def tiny_test_clips(tiny_dcase: Path) -> list[Path]:
    return sorted((tiny_dcase / "fan" / "test").glob("*.wav"))
