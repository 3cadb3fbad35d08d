"""Shared by the PatchCore benchmarks: embed a test set once, then score it with any memory bank or search."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from defectlens import metrics
from defectlens.data.datasets import Record
from defectlens.data.inputs import as_dataset, loader
from defectlens.data.transforms import Geometry
from defectlens.models.patchcore.torch_model import PatchCoreModel
from defectlens.models.smoothing import upsample_and_blur


@dataclass
class EmbeddedTestSet:
    """Patch features of every test image, with what the metrics need."""

    patches: torch.Tensor  # (N, P, D)
    grid: tuple[int, int]  # patch rows and columns
    image_size: tuple[int, int]
    labels: np.ndarray
    masks: list[np.ndarray | None]
    geometries: list[Geometry]

    @classmethod
    def embed(cls, module: PatchCoreModel, records: list[Record], resize, batch_size: int = 8):
        patches, masks, geometries = [], [], []
        with torch.inference_mode():
            for batch in loader(as_dataset(records, resize), batch_size):
                embedding = module.embed(batch.images)
                grid = tuple(embedding.shape[-2:])
                patches.append(embedding.flatten(2).transpose(1, 2).clone())
                masks += [m.numpy() if m is not None else None for m in batch.masks]
                geometries += batch.geometries
        labels = np.array([r.label for r in records])
        return cls(torch.cat(patches), grid, tuple(resize.size), labels, masks, geometries)

    def nearest(
        self, search: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 8
    ) -> tuple[torch.Tensor, float]:
        """(N, P) distances by `search` over batches of (B, P, D) patches, and its images/s."""
        start = time.perf_counter()
        with torch.inference_mode():
            distances = torch.cat([search(p) for p in self.patches.split(batch_size)])
        return distances, len(self.patches) / (time.perf_counter() - start)

    def evaluate(self, module: PatchCoreModel, distances: torch.Tensor) -> dict:
        """Test metrics of the patch distances, scored and smoothed as `module` does."""
        with torch.inference_mode():
            scores = torch.cat(
                [
                    module.reweighted_scores(p, d)
                    for p, d in zip(self.patches.split(64), distances.split(64), strict=True)
                ]
            )
            maps = upsample_and_blur(distances.view(-1, *self.grid), self.image_size, module.blur_sigma)
        pairs = [
            (g.crop_content(a), g.crop_content(m))
            for g, a, m in zip(self.geometries, maps.numpy(), self.masks, strict=True)
            if m is not None
        ]
        return metrics.evaluate(
            self.labels, scores.numpy(), 0.0, [m for _, m in pairs] or None, [a for a, _ in pairs] or None
        )
