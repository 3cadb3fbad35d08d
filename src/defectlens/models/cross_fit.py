"""Out-of-fold calibration for detectors fitted from frozen backbone features (PatchCore, PaDiM).

One backbone pass caches every good training image's embedding, and the model that ships is fitted on all
of them. Every good image also gets a score from a model that did not see it, and the thresholds are fitted
on all of those scores. By default (`out_of_fold="leave-image-out"`) that model is the shipped one without
the image: PatchCore's memory bank without the rows taken from it, PaDiM's Gaussians with it removed (an
exact rank-one downdate). With `out_of_fold="folds"`, each of k folds is scored by a model fitted on the
other folds (k - 1 of k images: its scores run higher than the shipped model's on unseen images).

Exact duplicates (the same pixels after resizing) are always left out together, so a copy of an image in
the training set never vouches for it.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.core.context import FitContext, progress_bar
from defectlens.core.settings import Integer, OneOf
from defectlens.data.transforms import Geometry
from defectlens.errors import DataError
from defectlens.models.base import Detector

OUT_OF_FOLD = ("leave-image-out", "folds")


def duplicate_groups(digests: list[bytes]) -> np.ndarray:
    """Group index of each image: images with identical digests (the same pixels) share a group.

    Raises:
        DataError: fewer than 2 distinct images.
    """
    groups, group_of = np.unique(np.array(digests, dtype=object), return_inverse=True)
    if len(groups) < 2:
        raise DataError(
            f"out-of-fold calibration needs at least 2 distinct good images, got {len(groups)} "
            f"(in {len(digests)} images)"
        )
    return group_of


def assign_folds(digests: list[bytes], folds: int, seed: int) -> np.ndarray:
    """Fold index of each image: identical digests get the same fold, and the distinct images are dealt
    to `folds` folds (fewer when there are fewer distinct images) in a seeded random order.

    Raises:
        DataError: fewer than 2 distinct images.
    """
    group_of = duplicate_groups(digests)
    n_groups = int(group_of.max()) + 1
    order = np.random.default_rng(seed).permutation(n_groups)
    fold_of_group = np.empty(n_groups, dtype=int)
    fold_of_group[order] = np.arange(n_groups) % min(folds, n_groups)
    return fold_of_group[group_of]


class HeldOutScores:
    """Raw image scores and content-map maxima of cached embeddings, filled in as `module`'s state changes."""

    def __init__(
        self,
        module: nn.Module,
        embeddings: torch.Tensor,
        geometries: list[Geometry],
        size: tuple[int, int],
        context: FitContext,
    ) -> None:
        self.module, self.embeddings, self.geometries = module, embeddings, geometries
        self.size, self.device = size, context.device
        self.scores, self.maxima = np.empty(len(embeddings)), np.empty(len(embeddings))

    def score(self, indices: np.ndarray, batch_size: int) -> None:
        """Score the embeddings at `indices` with the module as it is now."""
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            with torch.inference_mode():
                scores, maps = self.module.score_embedding(self.embeddings[chunk].to(self.device), self.size)
            self.record(chunk, scores, maps)

    def record(self, indices: np.ndarray, scores: torch.Tensor, maps: torch.Tensor) -> None:
        """Keep the image scores (B,) and maps (B, H, W) of the embeddings at `indices`."""
        self.scores[indices] = scores.float().cpu().numpy()
        self.maxima[indices] = [
            self.geometries[i].crop_content(m).max()
            for i, m in zip(indices, maps.float().cpu().numpy(), strict=True)
        ]


def _digest(image: torch.Tensor) -> bytes:
    return hashlib.blake2b(image.numpy().tobytes(), digest_size=16).digest()


class CrossFitDetector(Detector):
    """A detector whose fitted state is a function of per-image embeddings of a frozen backbone.

    Subclasses build the module (`_new_module`, with a torch module that has `embed(images)` -> (B, C, h, w)
    and `score_embedding(embedding, size)` -> (scores, maps)) and compute the fitted buffers from
    embeddings (`_fit_state`); fitting and out-of-fold calibration stay here.

    Args:
        out_of_fold: how each good training image gets its calibration score from a model that did not
            see it: "leave-image-out" (the shipped model without that image and its exact duplicates) or
            "folds" (`calibration_folds` models, each fitted without one fold).
        calibration_folds: folds of `out_of_fold="folds"` (at least 2; fewer when there are fewer
            distinct images).
        Other settings: see `Detector`.
    """

    calibration_scores: ClassVar[str] = "out-of-fold"
    settings: ClassVar = {"out_of_fold": OneOf(OUT_OF_FOLD), "calibration_folds": Integer(2)}

    def __init__(
        self, *, out_of_fold: str = "leave-image-out", calibration_folds: int = 5, **base: Any
    ) -> None:
        super().__init__(**base)
        self._keep(locals())

    @abstractmethod
    def _new_module(self, context: FitContext) -> nn.Module:
        """The module with its pretrained backbone and unfitted (empty) state, on `context.device`."""

    @abstractmethod
    def _fit_state(self, embeddings: torch.Tensor, context: FitContext) -> dict[str, torch.Tensor]:
        """The fitted buffers (name -> tensor) from (N, C, h, w) embeddings of good images."""

    @abstractmethod
    def _leave_image_out(self, held_out: HeldOutScores, group_of: np.ndarray, context: FitContext) -> None:
        """Fit `held_out.module` on all its embeddings, and score each into `held_out` with that model
        without the images of its duplicate group (`group_of`: one group index per image)."""

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        module = self._new_module(context)
        embeddings, _, _ = self._embeddings(module, train, context)
        self._load_state(module, self._fit_state(embeddings, context), context)
        return module

    def _fit_out_of_fold(
        self, train: DataLoader, context: FitContext
    ) -> tuple[nn.Module, np.ndarray, np.ndarray, str]:
        module = self._new_module(context)
        embeddings, digests, geometries = self._embeddings(module, train, context)
        held_out = HeldOutScores(module, embeddings, geometries, self.input_resize.size, context)
        source = self._cross_fit(module, embeddings, digests, held_out, context)
        return module, held_out.scores, held_out.maxima, source

    def _cross_fit(
        self,
        module: nn.Module,
        embeddings: torch.Tensor,
        digests: list[bytes],
        held_out: HeldOutScores,
        context: FitContext,
    ) -> str:
        """Score every embedding into `held_out` with a model that did not see it, leave `module` fitted on
        all of them, and describe how."""
        if self.out_of_fold == "leave-image-out":
            self._leave_image_out(held_out, duplicate_groups(digests), context)
            return f"leave-image-out ({len(embeddings)} images)"
        folds = assign_folds(digests, self.calibration_folds, self.seed)
        for fold in progress_bar(np.unique(folds), context.progress, "out-of-fold"):
            self._load_state(module, self._fit_state(embeddings[folds != fold], context), context)
            held_out.score(np.flatnonzero(folds == fold), self.batch_size)
        self._load_state(module, self._fit_state(embeddings, context), context)
        return f"out-of-fold ({len(np.unique(folds))} folds of {len(folds)} images)"

    @staticmethod
    def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], context: FitContext) -> None:
        for name, value in state.items():
            setattr(module, name, value.to(context.device))

    @staticmethod
    def _embeddings(
        module: nn.Module, data: DataLoader, context: FitContext
    ) -> tuple[torch.Tensor, list[bytes], list[Geometry]]:
        """(N, C, h, w) embeddings on the CPU, a digest of each resized image, and each one's geometry.

        The embeddings are written into one tensor allocated at the first batch, so the cache never exists
        twice (a concatenation would double the peak: 1.25 GB more for PaDiM on MTD's 762 tiles)."""
        embeddings: torch.Tensor | None = None
        digests: list[bytes] = []
        geometries: list[Geometry] = []
        with torch.inference_mode():
            for batch in progress_bar(data, context.progress, "features"):
                embedded = module.embed(batch.images.to(context.device)).cpu()
                if embeddings is None:
                    embeddings = torch.empty((len(data.dataset), *embedded.shape[1:]), dtype=embedded.dtype)
                embeddings[len(digests) : len(digests) + len(embedded)] = embedded
                digests += [_digest(image) for image in batch.images]
                geometries += batch.geometries
        return embeddings, digests, geometries
