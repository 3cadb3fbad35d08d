"""Tiles at working resolution: where they sit, how their maps blend back into one, and a dataset of them.

A detector with `tile_size` set resizes every image to its working resolution (`Resize`, as without
tiles) and cuts that into square tiles that overlap by `tile_overlap` of their side; the last tile of a
row or column is aligned with the border, so the tiles cover the canvas exactly. The model sees tiles
only: its training samples are the tiles of the good images (`TiledDataset`), and at inference the tiled
module (`models/tiling.py`) scores the tiles of each image and blends their maps with `TileLayout.blend`.
The layout is fixed by the canvas, the tile and the region of interest, so the tiled graph has static
shapes and exports like any other.

A region of interest (`roi`, white = inspect) is resized with the image (nearest neighbour). Tiles that
hold none of it are not cut at all.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from defectlens.data.inputs import Sample
from defectlens.data.transforms import Geometry
from defectlens.errors import ConfigError

__all__ = ["TileLayout", "TiledDataset", "tile_origins"]

EDGE_WEIGHT = 0.05  # blending weight of a tile's outermost pixels relative to its centre


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of side `tile` along an axis of `length` pixels, overlapping by at least
    `overlap` of a tile and spread evenly, the first at 0 and the last ending at `length`."""
    if tile > length:
        raise ConfigError(f"tile_size {tile} is larger than the working resolution side {length}")
    stride = max(1, math.floor(tile * (1 - overlap)))
    count = math.ceil((length - tile) / stride) + 1
    return sorted({round(i * (length - tile) / max(1, count - 1)) for i in range(count)})


def _window(tile: int) -> np.ndarray:
    """1-D blending window: EDGE_WEIGHT at the border rising to 1 at the centre (a raised sine), so that a
    pixel seen by two tiles is taken mostly from the tile where it is furthest from the border, where the
    backbone's zero padding does not reach."""
    centre = np.sin(np.pi * (np.arange(tile) + 0.5) / tile)
    return EDGE_WEIGHT + (1 - EDGE_WEIGHT) * centre


@dataclass(frozen=True)
class TileLayout:
    """The tiles of a `canvas = (H, W)` working resolution: `origins` are their (top, left) corners."""

    canvas: tuple[int, int]
    tile: tuple[int, int]
    origins: tuple[tuple[int, int], ...]

    @classmethod
    def plan(
        cls, canvas: Sequence[int], tile: int | None, overlap: float, roi: np.ndarray | None = None
    ) -> TileLayout:
        """Tiles of side `tile` (None: one tile, the whole canvas) overlapping by `overlap`, without the
        ones that hold no pixel of the (H, W) bool `roi`.

        Raises:
            ConfigError: the tile is larger than the canvas, or the ROI is empty.
        """
        height, width = (int(v) for v in canvas)
        if tile is None:
            origins = [(0, 0)]
            size = (height, width)
        else:
            origins = [
                (y, x)
                for y in tile_origins(height, tile, overlap)
                for x in tile_origins(width, tile, overlap)
            ]
            size = (tile, tile)
        if roi is not None:
            origins = [(y, x) for y, x in origins if roi[y : y + size[0], x : x + size[1]].any()]
            if not origins:
                raise ConfigError("the region of interest is empty: no pixel is white")
        return cls((height, width), size, tuple(origins))

    def __len__(self) -> int:
        return len(self.origins)

    def crop(self, array: np.ndarray | torch.Tensor, index: int) -> np.ndarray | torch.Tensor:
        """Tile `index` of an array whose last two axes are the canvas."""
        top, left = self.origins[index]
        return array[..., top : top + self.tile[0], left : left + self.tile[1]]

    def blend(self) -> torch.Tensor:
        """(T, h, w) weights: tile t's share of each of its pixels in the blended map (they sum to 1 at
        every covered canvas pixel)."""
        window = torch.from_numpy(np.outer(_window(self.tile[0]), _window(self.tile[1])).astype(np.float32))
        total = torch.zeros(self.canvas)
        for top, left in self.origins:
            total[top : top + self.tile[0], left : left + self.tile[1]] += window
        return torch.stack([window / self.crop(total, i).clamp_min(1e-12) for i in range(len(self))])

    def content_box(self, geometry: Geometry, index: int) -> tuple[int, int, int, int]:
        """The part of tile `index` that shows the picture of `geometry` (not padding), in tile pixels;
        height and width 0 when the tile is all padding."""
        top, left, height, width = geometry.content_box
        y, x = self.origins[index]
        y0, x0 = max(top, y), max(left, x)
        y1, x1 = min(top + height, y + self.tile[0]), min(left + width, x + self.tile[1])
        if y1 <= y0 or x1 <= x0:
            return (0, 0, 0, 0)
        return (y0 - y, x0 - x, y1 - y0, x1 - x0)


class TiledDataset(Dataset):
    """The tiles of every image of `images` (a dataset of `Sample`s at working resolution), image by image.

    Each tile is a `Sample` of its own: the image, mask and ROI cut to the tile, the picture's part of it
    as its geometry, its parent image's path, and in `digest` the parent's digest, so that the out-of-fold
    calibration leaves all tiles of an image out together. Consecutive reads of one image's tiles decode
    it once.
    """

    def __init__(self, images: Dataset, layout: TileLayout, roi: np.ndarray | None = None) -> None:
        self.images, self.layout = images, layout
        self.roi = None if roi is None else torch.from_numpy(np.asarray(roi, dtype=bool))
        self._last: tuple[int, object, bytes] | None = None

    def __len__(self) -> int:
        return len(self.images) * len(self.layout)

    def __getitem__(self, index: int) -> Sample:
        image_index, tile = divmod(index, len(self.layout))
        if self._last is None or self._last[0] != image_index:
            sample = self.images[image_index]
            digest = hashlib.blake2b(sample.image.numpy().tobytes(), digest_size=16).digest()
            if self.roi is not None:  # blanked outside, as the tiled module does
                sample = replace(sample, image=sample.image * self.roi)
            self._last = (image_index, sample, digest)
        _, sample, digest = self._last
        height, width = self.layout.tile
        return replace(
            sample,
            image=self.layout.crop(sample.image, tile).contiguous(),
            mask=None if sample.mask is None else self.layout.crop(sample.mask, tile).contiguous(),
            geometry=Geometry(
                (height, width), self.layout.content_box(sample.geometry, tile), (height, width)
            ),
            inspect=None if self.roi is None else self.layout.crop(self.roi, tile).contiguous(),
            digest=digest,
        )
