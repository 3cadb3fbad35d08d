"""Regions of interest: the pixels of a fixed camera view that are inspected, at working resolution."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from defectlens.core.context import progress_bar
from defectlens.data.io import read_mask
from defectlens.data.transforms import Resize
from defectlens.errors import ConfigError

AUTO_ROI = "auto"
AUTO_MARGIN = (
    1 / 32
)  # the automatic region grows by this share of the canvas side, for parts that move a little


def region_of_interest(
    roi: str | Path | None, images: Any, resize: Resize, progress: bool = False
) -> np.ndarray | None:
    """The (H, W) bool region of interest at `resize`'s working resolution, or None to inspect everything.

    `roi` is None, a mask image (anything above 0 is inspected; resized as an image of its own size is)
    or "auto": `auto_region` of `images` (a dataset of `Sample`s at working resolution).

    Raises:
        DataError: the mask cannot be read (naming the path).
        ConfigError: the region is empty.
    """
    if roi is None:
        return None
    if str(roi) == AUTO_ROI:
        steps = progress_bar(range(len(images)), progress, "region of interest")
        region = auto_region(images[i].image.numpy().mean(0) for i in steps)
        source = "the training images' foregrounds"
    else:
        region = resize.mask(read_mask(roi))
        source = str(roi)
    if not region.any():
        raise ConfigError(f"the region of interest from {source} is empty: no pixel is inspected")
    return region


def auto_region(images: Iterable[np.ndarray]) -> np.ndarray:
    """Where the part may be: the union of each grey image's (H, W, in [0, 1]) foreground, its holes
    filled, grown by `AUTO_MARGIN` of the canvas side.

    An image's foreground is the Otsu class that touches the image border less. The union (rather than the
    foreground of the mean image) keeps every place a part was seen in training: on MVTec screw, where
    the screws lie anywhere, the mean image's foreground covered 37 % of the canvas and cut parts off;
    the union covers 80 %.
    """
    union: np.ndarray | None = None
    for image in images:
        grey = np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8)
        _, bright = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        bright = bright.astype(bool)
        border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
        foreground = ~bright if border.mean() > 0.5 else bright
        union = foreground if union is None else union | foreground
    if union is None:
        raise ConfigError("roi 'auto' needs training images to find the part on")
    union = ndimage.binary_fill_holes(union)
    radius = max(1, round(AUTO_MARGIN * max(union.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(union.astype(np.uint8), kernel).astype(bool)
