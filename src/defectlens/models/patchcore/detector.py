"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.backbones import BACKBONE_WEIGHTS, BACKBONES, DEFAULT_BACKBONE, feature_extractor
from defectlens.core.context import FitContext, progress_bar
from defectlens.core.estimator import setting
from defectlens.core.settings import FRACTION, POSITIVE_INT, Integer, Items, OneOf, Optional
from defectlens.models.cross_fit import CrossFitDetector, HeldOutScores, duplicate_groups
from defectlens.models.patchcore.ivf import require_faiss
from defectlens.models.patchcore.sampler import KCenterGreedy, coarse_first
from defectlens.models.patchcore.torch_model import PatchCoreModel
from defectlens.models.registry import register
from defectlens.models.tiling import tile_module_of

logger = logging.getLogger(__name__)

SEARCHES = ("exact", "refine", "ivf")


@register("patchcore")
class PatchCore(CrossFitDetector):
    """Nearest-neighbour distance of each patch to a coreset of good patches.

    Args:
        backbone: timm model name of the frozen feature extractor, or a list of names: an ensemble whose
            patch features are concatenated on the first backbone's grid (one bank, one search, over the
            summed channels; docs/benchmarks.md compares it with scoring per backbone).
        layers: two or more mid-level backbone layers (timm `feature_info` indices), of every backbone.
        weights: backbone weight file; `None` uses packaged or cached ImageNet weights; with several
            backbones, a list of one file (or None) each.
        coreset_ratio: fraction of the training patches kept in the memory bank, in (0, 1]. With tiles, of
            one tile's patches per image: the tiles of an image repeat its surface, and a bank that grew
            with their number would slow every search as much (docs/tiling.md).
        projection_dim: random projection size used for coreset selection (0: none).
        coreset_pivots: centres selected by exact greedy before the faster partitioned selection takes
            over; 0 makes the whole selection exact (identical to the textbook loop, slower); None (the
            default): exact while patches x centres <= 1e10 (about 300 images at 256 px and ratio 0.1),
            1,000 pivots beyond.
        num_neighbors: neighbourhood size of the image-score re-weighting.
        blur_sigma: Gaussian smoothing of the anomaly map in pixels.
        search: "exact" nearest-neighbour search; "refine": approximate, in two stages that are part of
            the graph, so exports run it too (`PatchCoreModel`; measured in docs/speed.md); or "ivf":
            faiss's approximate inverted-file index (optional dependency faiss-cpu), about 3x faster
            predictions at ratio 0.1 with AUROCs within 0.001 on MTD (docs/benchmarks.md), which exports
            replace with exact search.
        coarse_ratio: the share of the memory bank "refine" searches every patch in: a greedy coreset of
            the bank, kept in its first rows.
        refine_patches: the patches per model input that "refine" then searches in the whole bank: those
            farthest from the coarse rows.
        ivf_cells, ivf_probes: cells of the "ivf" index (centred on the first greedy coreset centres) and
            cells visited per patch.
        resize: "pad" by default: nearest-neighbour scores do not depend on position, and on the elongated
            MTD tiles keeping the aspect ratio measured pixel AUROC 0.857 against 0.835 squashed
            (image AUROC 0.966 vs 0.967; docs/benchmarks.md).
        out_of_fold, calibration_folds: see `CrossFitDetector`; "leave-image-out" scores each good
            training image against the shipped memory bank without the rows taken from it (searched
            exactly): one coreset instead of k + 1. image_size, batch_size and the other shared settings:
            see `Detector`.
    """

    backbone: str | tuple[str, ...] = setting(DEFAULT_BACKBONE, BACKBONES)
    layers: tuple[int, ...] = setting((2, 3), Items(Integer(0), min_length=2))
    weights: str | tuple[str | None, ...] | None = setting(None, BACKBONE_WEIGHTS)
    coreset_ratio: float = setting(0.1, FRACTION)
    projection_dim: int = setting(128, Integer(0))
    coreset_pivots: int | None = setting(None, Optional(Integer(0), "exact while it is affordable"))
    num_neighbors: int = setting(9, POSITIVE_INT)
    search: str = setting("exact", OneOf(SEARCHES))
    coarse_ratio: float = setting(0.1, FRACTION)
    refine_patches: int = setting(16, POSITIVE_INT)
    ivf_cells: int = setting(1024, POSITIVE_INT)
    ivf_probes: int = setting(16, POSITIVE_INT)
    resize: str = setting("pad")

    def _check_params(self) -> None:
        super()._check_params()
        if self.search == "ivf":
            require_faiss()

    def _bank_ratio(self, roi: np.ndarray | None) -> float:
        """The share of the training patches the bank keeps: `coreset_ratio` of one model input per image."""
        return self.coreset_ratio / (len(self._layout(roi)) if self.tiled else 1)

    def _sampler(self) -> KCenterGreedy:
        return KCenterGreedy(
            ratio=self._bank_ratio(self.roi_mask_),
            projection_dim=self.projection_dim,
            pivots=self.coreset_pivots,
            seed=self.seed,
        )

    def _module(self, pretrained: bool, memory_bank: torch.Tensor) -> PatchCoreModel:
        extractor = feature_extractor(self.backbone, tuple(self.layers), self.weights, pretrained)
        return PatchCoreModel(
            extractor,
            memory_bank,
            self.num_neighbors,
            self.blur_sigma,
            search=self.search,
            coarse_ratio=self.coarse_ratio,
            refine_patches=self.refine_patches,
            ivf_cells=self.ivf_cells,
            ivf_probes=self.ivf_probes,
        )

    def export_module(self) -> nn.Module:
        module = super().export_module()
        if self.search == "ivf":
            tile_module_of(module).search = "exact"  # a graph cannot hold the faiss index
        return module

    def _new_module(self, context: FitContext) -> PatchCoreModel:
        return self._module(True, torch.empty(0)).to(context.device)

    def _fit_state(
        self, embeddings: torch.Tensor, kept: torch.Tensor | None, context: FitContext
    ) -> dict[str, torch.Tensor]:
        features = self._patches(embeddings, kept)
        return {"memory_bank": self._coarse_first(features[self._coreset(features, context)])}

    def _coreset(self, features: torch.Tensor, context: FitContext) -> torch.Tensor:
        coreset = self._sampler().select(features, progress=context.progress)
        logger.info("memory bank: %d of %d patches, %d dims", len(coreset), len(features), features.shape[1])
        return coreset

    def _coarse_first(self, bank: torch.Tensor) -> torch.Tensor:
        return coarse_first(bank, KCenterGreedy(self.coarse_ratio, self.projection_dim, seed=self.seed))

    def _leave_image_out(self, module: nn.Module, train: DataLoader, context: FitContext) -> HeldOutScores:
        embedded = self._embeddings(module, train, context)
        embeddings, kept = embedded.embeddings, embedded.kept_patches()
        group_of = duplicate_groups(embedded.digests)
        features = self._patches(embeddings, kept)
        coreset = self._coreset(features, context)
        bank = features[coreset].contiguous().to(context.device)
        owner = torch.arange(len(embeddings)).repeat_interleave(embeddings.shape[2] * embeddings.shape[3])
        if kept is not None:
            owner = owner[kept.flatten()]
        row_group = torch.as_tensor(group_of)[owner[coreset]]
        held_out = HeldOutScores(module, embedded.geometries, (self.input_side,) * 2, embedded.inspect)
        search, module.search = module.search, "exact"  # an IVF index per image would cost more than it saves
        try:
            # One bank without the group's rows for all of its inputs: an image with its duplicates, and
            # with tiles, all of their tiles.
            for group in progress_bar(np.unique(group_of), context.progress, "leave-image-out"):
                module.memory_bank = bank[(row_group != int(group)).to(bank.device)]
                members = np.flatnonzero(group_of == group)
                held_out.score(members, embeddings[members], self.batch_size)
        finally:
            module.memory_bank, module.search = self._coarse_first(bank), search
        return held_out

    def _extend_module(self, good: DataLoader, context: FitContext) -> bool:
        """New good images join the memory bank through their own coreset at the same ratio."""
        module = self.tile_module_
        embedded = self._embeddings(module, good, context)
        features = self._patches(embedded.embeddings, embedded.kept_patches())
        coreset = self._sampler().select(features, progress=context.progress)
        bank = module.memory_bank
        module.memory_bank = self._coarse_first(torch.cat([bank, features[coreset].to(bank)]))
        logger.info("memory bank grew by %d to %d patches", len(coreset), len(module.memory_bank))
        return True

    @staticmethod
    def _patches(embeddings: torch.Tensor, kept: torch.Tensor | None) -> torch.Tensor:
        """(N, D, h, w) embeddings -> (P, D) patch features: all N * h * w, or those `kept` (N, h, w)."""
        patches = embeddings.permute(0, 2, 3, 1).flatten(0, 2)
        return patches if kept is None else patches[kept.flatten()]

    def _shaped_module(self, n_train_images: int) -> nn.Module:
        module = self._module(False, torch.empty(0))
        stride = module.extractor.strides[0]
        n_patches = n_train_images * (self.input_side // stride) ** 2
        rows = min(n_patches, max(1, round(self._bank_ratio(None) * n_patches)))
        # Random rows stand in for the fitted bank: same shape, and spread out as real features are, so
        # that an IVF index built on them (search="ivf") fills its cells and costs what it would.
        generator = torch.Generator().manual_seed(0)
        module.memory_bank = torch.randn(rows, sum(module.extractor.channels), generator=generator)
        return module

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._module(False, torch.empty_like(state["memory_bank"]))
