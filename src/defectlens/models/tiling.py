"""A fitted tile model applied to whole images at working resolution: tiles in, one blended map out.

`TiledModule` wraps the module a detector fitted on tiles (`data/tiling.py`). It cuts each image into
the layout's tiles with static slices, scores them in one batch, and returns

- the image score: the highest tile score (PatchCore's re-weighted score per tile, the map maximum for
  the others); with a region of interest, the highest map value inside it, since a tile's own score may
  come from a pixel outside;
- the map: the tile maps blended with the layout's weights; outside the region of interest, the lowest
  value inside it, so no box, threshold or metric can fire there.

Pixels outside the region of interest are blanked (black) before the tiles are cut, in training as here:
a CNN feature sees far past its own cell, so a defect outside would otherwise still reach the scores
inside.

Every step is a fixed tensor operation, so torch, TorchScript, ONNX Runtime and OpenVINO run the same
graph and the exporter's parity check covers tiling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defectlens.data.tiling import TileLayout


class TiledModule(nn.Module):
    """Images (B, 3, H, W) at working resolution -> scores (B,) and blended maps (B, H, W).

    Args:
        tile_module: the fitted module for (N, 3, h, w) tiles, returning scores (N,) and maps (N, h, w).
        layout: where the tiles sit on the (H, W) canvas.
        roi: (H, W) bool region of interest, or None to inspect everything.
        tile_batch: tiles per call of `tile_module` in eager mode.
    """

    def __init__(
        self, tile_module: nn.Module, layout: TileLayout, roi: torch.Tensor | None = None, tile_batch: int = 8
    ) -> None:
        super().__init__()
        self.tile_module = tile_module
        self.layout = layout
        self.tile_batch = tile_batch
        self.register_buffer("blend", layout.blend(), persistent=False)  # recomputed from the layout
        self.register_buffer("roi", torch.empty(0, dtype=torch.bool) if roi is None else roi.bool())
        tiles_roi = (
            torch.empty(0, dtype=torch.bool)
            if roi is None
            else torch.stack([layout.crop(self.roi, i) for i in range(len(layout))])
        )
        self.register_buffer("tiles_roi", tiles_roi, persistent=False)

    @property
    def has_roi(self) -> bool:
        return self.roi.numel() > 0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count, (tile_h, tile_w) = len(self.layout), self.layout.tile
        if self.has_roi:
            images = images * self.roi  # blanked as in training: the backbone's view reaches past the ROI
        tiles = torch.stack([self.layout.crop(images, i) for i in range(count)], 1).flatten(0, 1)
        if torch.jit.is_tracing() or len(tiles) <= self.tile_batch:
            tile_scores, tile_maps = self.tile_module(tiles)
        else:  # eager: a few tiles at a time bound the backbone's activations (a traced graph: one call)
            scored = [self.tile_module(chunk) for chunk in tiles.split(self.tile_batch)]
            tile_scores, tile_maps = (torch.cat(parts) for parts in zip(*scored, strict=True))
        tile_maps = tile_maps.reshape(-1, count, tile_h, tile_w)
        if self.has_roi:
            inside = tile_maps.masked_fill(~self.tiles_roi, float("-inf"))
            scores = inside.flatten(1).amax(1)
        else:
            scores = tile_scores.reshape(-1, count).amax(1)
        height, width = self.layout.canvas
        weighted = tile_maps * self.blend
        maps = torch.zeros(())
        for i, (top, left) in enumerate(self.layout.origins):
            # A padded copy per tile rather than writes into a slice: the traced graph stays a plain sum.
            maps = maps + F.pad(weighted[:, i], (left, width - left - tile_w, top, height - top - tile_h))
        if self.has_roi:
            lowest = maps.masked_fill(~self.roi, float("inf")).flatten(1).amin(1)
            maps = torch.where(self.roi, maps, lowest[:, None, None])
        return scores, maps


def tile_module_of(module: nn.Module) -> nn.Module:
    """The module that scores one model input: the tile module of a `TiledModule`, else `module` itself."""
    return module.tile_module if isinstance(module, TiledModule) else module
