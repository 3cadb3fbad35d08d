"""Tiny generated images and dataset trees for the data-layer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _save(path: Path, array: np.ndarray | Image.Image, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = array if isinstance(array, Image.Image) else Image.fromarray(array)
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    img.save(path)
    return path


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def save_image() -> Callable[..., Path]:
    """``save_image(path, array_or_pil, mode=None)`` writes an image, creating parent folders."""
    return _save


@pytest.fixture
def rgb() -> Callable[..., np.ndarray]:
    """``rgb(height, width, seed=0)``: a random uint8 RGB array."""
    return _rgb


def _mask(height: int, width: int) -> np.ndarray:
    m = np.zeros((height, width), np.uint8)
    m[height // 4 : height // 2, width // 4 : width // 2] = 255
    return m


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """A small MVTec-layout tree with mixed suffixes, odd stems, non-square and varying sizes.

    train/good: 10 images (+ a stray ``*_mask.png``, a hidden file and a text file, all ignored)
    test/good: 3, test/crack: 2 (``a.b_01.png``, ``002.jpg``), test/hole: 1 (``h1.bmp``)
    ground_truth: a ``*_mask`` file for each anomalous image.
    """
    root = tmp_path / "mvtec" / "widget"
    suffixes = [".png", ".jpg", ".bmp", ".png", ".JPG"]
    for i in range(10):
        h, w = 40 + 3 * i, 60 + 2 * i
        _save(root / "train" / "good" / f"t{i:03d}{suffixes[i % 5]}", _rgb(h, w, i))
    _save(root / "train" / "good" / "t000_mask.png", _mask(40, 60))
    (root / "train" / "good" / ".DS_Store").write_bytes(b"\x00junk")
    (root / "train" / "good" / "readme.txt").write_text("not an image")
    for i in range(3):
        _save(root / "test" / "good" / f"g{i}.png", _rgb(48, 64, 100 + i))
    crack = {"a.b_01.png": (50, 70), "002.jpg": (64, 48)}
    for name, (h, w) in crack.items():
        _save(root / "test" / "crack" / name, _rgb(h, w, 200))
        _save(root / "ground_truth" / "crack" / f"{Path(name).stem}_mask.png", _mask(h, w))
    _save(root / "test" / "hole" / "h1.bmp", _rgb(45, 45, 300))
    _save(root / "ground_truth" / "hole" / "h1_mask.png", _mask(45, 45))
    return root


@pytest.fixture
def folder_data(tmp_path: Path) -> dict[str, Path]:
    """good (10), scratch (2), dent (1), masks matched by stem (``<stem>.png`` or ``<stem>_mask.png``)."""
    base = tmp_path / "folders"
    for i in range(10):
        _save(base / "good" / f"ok_{i:02d}.png", _rgb(32 + i, 48, i))
    for name in ("s.1", "s.2"):
        _save(base / "scratch" / f"{name}.png", _rgb(40, 40, 7))
    _save(base / "dent" / "d1.jpg", _rgb(36, 52, 8))
    _save(base / "masks" / "s.1.png", _mask(40, 40))
    _save(base / "masks" / "s.2_mask.png", _mask(40, 40))
    _save(base / "masks" / "d1_mask.bmp", _mask(36, 52))
    for i in range(2):
        _save(base / "good_test" / f"gt{i}.png", _rgb(30, 30, 50 + i))
    return {
        "good": base / "good",
        "scratch": base / "scratch",
        "dent": base / "dent",
        "masks": base / "masks",
        "good_test": base / "good_test",
    }
