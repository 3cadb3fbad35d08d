"""PatchCore as a pure torch module: locally aware patch features, memory bank, nearest-neighbour scores."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defectlens.backbones import FeatureExtractor
from defectlens.models.patchcore.distances import nearest_of
from defectlens.models.smoothing import upsample_and_blur


class PatchCoreModel(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and anomaly maps (B, H, W).

    Args:
        extractor: frozen backbone returning two or more feature maps.
        memory_bank: (M, D) coreset of good patch features; a buffer, so it is saved with the weights.
        num_neighbors: b in the paper's image-score re-weighting (Eq. 7).
        blur_sigma: Gaussian smoothing of the anomaly map, in input pixels.
        bank_chunk: memory-bank rows per distance block; bounds memory at batch x patches x chunk floats.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        memory_bank: torch.Tensor,
        num_neighbors: int = 9,
        blur_sigma: float = 4.0,
        bank_chunk: int = 4096,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.register_buffer("memory_bank", memory_bank)
        self.num_neighbors = num_neighbors
        self.blur_sigma = blur_sigma
        self.bank_chunk = bank_chunk

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features (B, D, h, w) at the resolution of the first layer."""
        features = [F.avg_pool2d(f, kernel_size=3, stride=1, padding=1) for f in self.extractor(images)]
        size = features[0].shape[-2:]
        features = [
            f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear") for f in features
        ]
        return torch.cat(features, dim=1)

    def nearest(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance (Q,) and index (Q,) of each query's nearest memory-bank row, block by block."""
        query_sq = (queries * queries).sum(1)
        best, index = nearest_of(queries, query_sq, self.memory_bank[: self.bank_chunk])
        # Tensors sized from the first block, not from len(queries): exported graphs keep a free batch size.
        for start in range(self.bank_chunk, len(self.memory_bank), self.bank_chunk):
            block_best, block_index = nearest_of(
                queries, query_sq, self.memory_bank[start : start + self.bank_chunk]
            )
            closer = block_best < best
            best = torch.where(closer, block_best, best)
            index = torch.where(closer, block_index + start, index)
        return best, index

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(images)
        batch, dim, height, width = embedding.shape
        patches = embedding.permute(0, 2, 3, 1).reshape(batch, height * width, dim)
        distances, index = self.nearest(patches.reshape(-1, dim))
        distances, index = distances.view(batch, -1), index.view(batch, -1)
        scores = self.reweighted_scores(patches, distances, index)
        maps = upsample_and_blur(distances.view(batch, height, width), images.shape[-2:], self.blur_sigma)
        return scores, maps

    def reweighted_scores(
        self, patches: torch.Tensor, distances: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """Image score s = (1 - softmax over N_b(m*) of ||m_test* - m||)[m*] * s*, the paper's Eq. 7.

        The most anomalous test patch m_test* is down-weighted when its nearest bank entry m* sits in a
        dense neighbourhood, i.e. when the other neighbours of m* are about as close to m_test*.
        """
        top_score, top_patch = distances.max(1, keepdim=True)  # (B, 1)
        test_patch = patches.gather(1, top_patch[..., None].expand(-1, -1, patches.shape[-1]))[:, 0]  # (B, D)
        nearest_bank = self.memory_bank[index.gather(1, top_patch)[:, 0]]  # (B, D): m*
        k = min(self.num_neighbors, len(self.memory_bank))
        _, neighbours = torch.cdist(nearest_bank, self.memory_bank).topk(
            k, largest=False
        )  # includes m* first
        to_neighbours = torch.linalg.vector_norm(test_patch[:, None] - self.memory_bank[neighbours], dim=-1)
        weight = 1.0 - torch.softmax(to_neighbours, dim=1)[:, 0]
        return weight * top_score[:, 0]
