"""Training images of one defect class, loaded once at the GAN's size in the mode the GAN works in.

Every file is read as RGB (any Pillow mode: grey, palette, 16-bit, RGBA...) and resized to a square
`size` x `size` with the detectors' `Resize("squash")` (OpenCV area interpolation when shrinking), so
folders of mixed sizes and modes work. The set's mode is grey ('L') when every image is grey (a grey
file, or RGB with R = G = B, as NEU's JPEGs are), else 'RGB'; grey uses ITU-R BT.601 weights, as
Pillow's `convert("L")` and the DCGAN do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from defectlens.data.io import list_images, read_image
from defectlens.data.transforms import Resize
from defectlens.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as the DCGAN's grey conversion
MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class ImageSet:
    """Images at the GAN's size: uint8 (N, S, S) for mode 'L' or (N, S, S, 3) for 'RGB'."""

    images: np.ndarray
    paths: list[Path]
    mode: str

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 grey (BT.601 weights, rounded); exact for R = G = B."""
    return np.clip(np.rint(rgb.astype(np.float64) @ GRAY_WEIGHTS), 0, 255).astype(np.uint8)


def is_grey(rgb: np.ndarray) -> bool:
    """True when the three channels of an (H, W, 3) image are equal everywhere."""
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def image_paths(data: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files of a folder (sorted, not recursive) or an explicit list of files.

    Raises:
        DataError: the folder does not exist, or no image is found.
    """
    if isinstance(data, str | Path):
        paths = list_images(data)
        if not paths:
            raise DataError(f"image folder {data} holds no images (.png, .jpg, .bmp, .tif, .webp)")
        return paths
    paths = [Path(p) for p in data]
    if not paths:
        raise DataError("no training images given: the list of image files is empty")
    return paths


def load_image_set(
    data: str | Path | Sequence[str | Path], size: int, channels: int | None = None, progress: bool = False
) -> ImageSet:
    """Read and resize every image of `data` to `size` x `size`.

    Args:
        data: a folder of images or a list of image files.
        size: side of the square output.
        channels: 1 (grey) or 3 (RGB); `None` picks 1 when every image is grey, else 3.
        progress: show a progress bar.

    Raises:
        DataError: no images, or an unreadable file (the message names it).
        ConfigError: `channels` is not 1, 3 or None.
    """
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 (grey), 3 (RGB) or None (from the data), got {channels!r}")
    paths = image_paths(data)
    resize = Resize(size, "squash")
    resized, sizes, grey = [], set(), []
    for path in tqdm(paths, desc="load images", unit="image", leave=False, disable=not progress):
        rgb = read_image(path)
        sizes.add(rgb.shape[:2])
        grey.append(is_grey(rgb))
        image, _ = resize.image(rgb)
        resized.append(np.rint(image.transpose(1, 2, 0) * 255).astype(np.uint8))
    if len(sizes) > 1:
        logger.info(
            "%d images of %d different sizes: each is resized to %dx%d", len(paths), len(sizes), size, size
        )
    if channels is None:
        channels = 1 if all(grey) else 3
        if any(grey) and not all(grey):
            logger.info(
                "%d of %d images are grey, the rest colour: all are used as RGB", sum(grey), len(grey)
            )
    elif channels == 1 and not all(grey):
        logger.info("%d colour images are converted to grey", len(grey) - sum(grey))
    images = np.stack(resized)
    return ImageSet(to_grey(images) if channels == 1 else images, paths, MODES[channels])


def as_rgb_batch(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S) grey or (N, S, S, 3) RGB -> uint8 (N, S, S, 3)."""
    return np.repeat(images[..., None], 3, axis=-1) if images.ndim == 3 else images


__all__ = ["ImageSet", "as_rgb_batch", "image_paths", "is_grey", "load_image_set", "to_grey"]
