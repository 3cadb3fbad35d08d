"""Tiny generated defect classes for the augmentation tests: grey textures written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def stripes(seed: int, vertical: bool = False, size: int = 48) -> np.ndarray:
    """A grey (size, size) uint8 texture: stripes of random frequency and phase plus noise."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(0, rng.uniform(4, 10) * np.pi, size) + rng.uniform(0, 2 * np.pi)
    wave = np.sin(axis)[None, :] if vertical else np.sin(axis)[:, None]
    image = 128 + 60 * wave + rng.normal(0, 12, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_class(folder: Path, seeds: range, vertical: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        Image.fromarray(stripes(seed, vertical)).save(folder / f"{seed:03d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 grey 48x48 PNG textures of one class."""
    return write_class(tmp_path_factory.mktemp("tiny_class") / "scratches", range(24))


@pytest.fixture(scope="session")
def embedder():
    from defectlens.augment.features import Embedder

    return Embedder()
