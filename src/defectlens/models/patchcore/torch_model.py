"""PatchCore as a pure torch module: locally aware patch features, memory bank, nearest-neighbour scores."""

from __future__ import annotations

import torch
from torch import nn

from defectlens.backbones import FeatureExtractor, locally_aware_patches
from defectlens.models.patchcore.distances import pairwise_distances
from defectlens.models.patchcore.ivf import InvertedFileIndex
from defectlens.models.smoothing import upsample_and_blur


class PatchCoreModel(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and anomaly maps (B, H, W).

    Args:
        extractor: frozen backbone returning two or more feature maps.
        memory_bank: (M, D) coreset of good patch features; a buffer, so it is saved with the weights.
        num_neighbors: b in the paper's image-score re-weighting (Eq. 7).
        blur_sigma: Gaussian smoothing of the anomaly map, in input pixels.
        query_chunk, bank_chunk: patches x memory-bank rows per distance tile; bounds memory and keeps the
            tile in the CPU cache (1024 x 2048 float32 = 8 MB measured fastest on the benchmark machine).
        search: "exact"; "refine", approximate and part of the graph (exports run it too): every patch is
            searched in the first `coarse_ratio` of the bank rows (the detector puts a greedy coreset of
            the bank there), and each image's `refine_patches` farthest patches again in the whole bank;
            or "ivf", faiss's approximate inverted-file index in eager mode (`ivf.py`), which a traced
            graph replaces with exact search.
        coarse_ratio, refine_patches: the two stages of "refine".
        ivf_cells, ivf_probes: cells of the IVF index and cells visited per query.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        memory_bank: torch.Tensor,
        num_neighbors: int = 9,
        blur_sigma: float = 4.0,
        query_chunk: int = 1024,
        bank_chunk: int = 2048,
        search: str = "exact",
        coarse_ratio: float = 0.1,
        refine_patches: int = 16,
        ivf_cells: int = 1024,
        ivf_probes: int = 16,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.register_buffer("memory_bank", memory_bank)
        self.num_neighbors = num_neighbors
        self.blur_sigma = blur_sigma
        self.query_chunk = query_chunk
        self.bank_chunk = bank_chunk
        self.search = search
        self.coarse_ratio = coarse_ratio
        self.refine_patches = refine_patches
        self.ivf_cells = ivf_cells
        self.ivf_probes = ivf_probes
        self._ivf: tuple[torch.Tensor, InvertedFileIndex] | None = None  # (bank it indexes, index)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features (B, D, h, w) at the resolution of the first layer."""
        return locally_aware_patches(self.extractor(images))

    def nearest_distances(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, P) distance of each of the patches (B, P, D) to its nearest memory-bank row, as `search` says
        (exact while "ivf" is being traced).

        "refine" is exact for the patches it refines and an upper bound elsewhere (the coarse rows are a
        subset of the bank), so an image's farthest patches, which make its score, are exact whenever the
        coarse stage ranks them among its `refine_patches` farthest.
        """
        n_patches, dim = int(patches.shape[1]), int(patches.shape[2])
        if self.search == "ivf" and not torch.jit.is_tracing():
            return self.ivf_index().distances(patches.reshape(-1, dim)).view(-1, n_patches)
        coarse_rows = max(1, round(self.coarse_ratio * len(self.memory_bank)))
        refined = min(self.refine_patches, n_patches)
        if self.search != "refine" or coarse_rows >= len(self.memory_bank) or refined >= n_patches:
            return self.exact_distances(patches, self.memory_bank)
        coarse = self.exact_distances(patches, self.memory_bank[:coarse_rows])
        farthest = coarse.topk(refined, dim=1).indices  # (B, refined)
        queries = patches.gather(1, farthest[..., None].expand(-1, -1, dim))
        return coarse.scatter(1, farthest, self.exact_distances(queries, self.memory_bank))

    def exact_distances(self, patches: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """(B, P) distance of each of the patches (B, P, D) to its nearest row of `bank` (M, D).

        The search runs in tiles of about `query_chunk` x `bank_chunk` distances (8 MB by default), so
        that a tile is still in the CPU cache when its minimum is taken: writing whole (patches x bank)
        blocks to memory and reading them back made exact search 1.8x slower here (docs/benchmarks.md).
        """
        n_patches, dim = int(patches.shape[1]), int(patches.shape[2])
        blocks = bank.split(self.bank_chunk)
        blocks_sq = [(block * block).sum(1) for block in blocks]
        # Patches per image in one tile. int() makes it a constant when traced: an exported graph keeps a
        # free batch size, and only its tiling (not its results) follows the example batch.
        step = max(1, self.query_chunk // max(1, int(patches.shape[0])))
        columns = []
        for start in range(0, n_patches, step):
            queries = patches[:, start : start + step].reshape(-1, dim)
            partial = torch.stack(
                [
                    torch.addmm(block_sq, queries, block.T, alpha=-2.0).amin(1)
                    for block, block_sq in zip(blocks, blocks_sq, strict=True)
                ]
            ).amin(0)
            columns.append(partial.view(-1, min(step, n_patches - start)))
        squared = torch.cat(columns, 1) + (patches * patches).sum(-1)
        return squared.clamp_min(0).sqrt()

    def __getstate__(self) -> dict:
        # The faiss index is a cache rebuilt from the bank on demand: copies and pickles leave it out.
        return {**super().__getstate__(), "_ivf": None}

    def ivf_index(self) -> InvertedFileIndex:
        """The approximate index of the current memory bank, built on first use and after the bank changes."""
        if self._ivf is None or self._ivf[0] is not self.memory_bank:
            index = InvertedFileIndex(self.memory_bank, self.ivf_cells, self.ivf_probes)
            self._ivf = (self.memory_bank, index)
        return self._ivf[1]

    def untracked_flops(self) -> float:
        """FLOPs of the last forward's faiss search, which torch's FLOP counter cannot see (0 if exact)."""
        return self._ivf[1].last_flops if self.search == "ivf" and self._ivf is not None else 0.0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_embedding(self.embed(images), images.shape[-2:])

    def score_embedding(
        self, embedding: torch.Tensor, size: tuple[int, int] | torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and anomaly maps (B, *size) of patch features (B, D, h, w) from `embed`."""
        batch, dim, height, width = embedding.shape
        patches = embedding.permute(0, 2, 3, 1).reshape(batch, height * width, dim)
        distances = self.nearest_distances(patches)
        scores = self.reweighted_scores(patches, distances)
        maps = upsample_and_blur(distances.view(batch, height, width), size, self.blur_sigma)
        return scores, maps

    def reweighted_scores(self, patches: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Image score s = (1 - softmax over N_b(m*) of ||m_test* - m||)[m*] * s*, the paper's Eq. 7.

        The most anomalous test patch m_test* is down-weighted when its nearest bank entry m* sits in a
        dense neighbourhood, i.e. when the other neighbours of m* are about as close to m_test*. Only this
        one patch per image needs its nearest row's index, so the tiled search keeps distances alone.
        """
        top_score, top_patch = distances.max(1, keepdim=True)  # (B, 1)
        test_patch = patches.gather(1, top_patch[..., None].expand(-1, -1, patches.shape[-1]))[:, 0]  # (B, D)
        nearest_bank = self.memory_bank[pairwise_distances(test_patch, self.memory_bank).argmin(1)]  # m*
        k = min(self.num_neighbors, len(self.memory_bank))
        _, neighbours = pairwise_distances(nearest_bank, self.memory_bank).topk(k, largest=False)  # m* first
        to_neighbours = torch.linalg.vector_norm(test_patch[:, None] - self.memory_bank[neighbours], dim=-1)
        weight = 1.0 - torch.softmax(to_neighbours, dim=1)[:, 0]
        return weight * top_score[:, 0]
