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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from defectlens.core.context import FitContext, progress_bar
from defectlens.core.estimator import setting
from defectlens.core.settings import Integer, OneOf
from defectlens.data.inputs import Batch
from defectlens.data.transforms import Geometry
from defectlens.errors import DataError
from defectlens.models.base import Detector, content_maxima

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


@dataclass
class Embedded:
    """What a feature pass over good model inputs keeps: embeddings (N, C, h, w) on the CPU, each input's
    digest (its parent image's for a tile), geometry and region of interest (None: all of it)."""

    embeddings: torch.Tensor
    digests: list[bytes]
    geometries: list[Geometry]
    inspect: list[torch.Tensor | None]

    def kept_patches(self) -> torch.Tensor | None:
        """(N, h, w) bool: the patches whose cell lies mostly inside the region of interest, or None when
        there is none."""
        if all(region is None for region in self.inspect):
            return None
        grid = self.embeddings.shape[-2:]
        regions = torch.stack([r.float() for r in self.inspect])[:, None]
        return F.adaptive_avg_pool2d(regions, grid)[:, 0] >= 0.5


class HeldOutScores:
    """Raw scores and content-map maxima of the good training inputs, filled in by the models that did not
    see them. With a region of interest, an input's score is its map's maximum inside it, as the tiled
    module scores (`models/tiling.py`)."""

    def __init__(
        self,
        module: nn.Module,
        geometries: list[Geometry],
        size: tuple[int, int],
        inspect: list[torch.Tensor | None] | None = None,
    ) -> None:
        self.module, self.geometries, self.size = module, geometries, size
        self.inspect = inspect if inspect and any(r is not None for r in inspect) else None
        self.scores, self.maxima = np.empty(len(geometries)), np.empty(len(geometries))

    def score(self, indices: np.ndarray, embeddings: torch.Tensor, batch_size: int) -> None:
        """Score the embeddings (N, C, h, w) of the images at `indices` with `module` as it is now."""
        device = next(iter(self.module.buffers())).device
        for start in range(0, len(indices), batch_size):
            chunk = slice(start, start + batch_size)
            with torch.inference_mode():
                scores, maps = self.module.score_embedding(embeddings[chunk].to(device), self.size)
            self.record(indices[chunk], scores, maps)

    def record(self, indices: np.ndarray, scores: torch.Tensor, maps: torch.Tensor) -> None:
        """Keep the image scores (B,) and maps (B, H, W) of the embeddings at `indices`."""
        maps = maps.float().cpu().numpy()
        geometries = [self.geometries[i] for i in indices]
        if self.inspect is None:
            self.scores[indices] = scores.float().cpu().numpy()
            self.maxima[indices] = content_maxima(maps, geometries)
            return
        regions = [self.inspect[i].numpy() for i in indices]
        self.scores[indices] = [np.where(r, m, -np.inf).max() for m, r in zip(maps, regions, strict=True)]
        self.maxima[indices] = content_maxima(maps, geometries, regions)


def digests_of(batch: Batch) -> list[bytes]:
    """A digest of each resized image of `batch` (of its parent image for a tile): equal digests, equal
    pixels."""
    if batch.digests and all(d is not None for d in batch.digests):
        return list(batch.digests)
    return [hashlib.blake2b(image.numpy().tobytes(), digest_size=16).digest() for image in batch.images]


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
    out_of_fold: str = setting("leave-image-out", OneOf(OUT_OF_FOLD))
    calibration_folds: int = setting(5, Integer(2))

    @abstractmethod
    def _new_module(self, context: FitContext) -> nn.Module:
        """The module with its pretrained backbone and unfitted (empty) state, on `context.device`."""

    @abstractmethod
    def _fit_state(
        self, embeddings: torch.Tensor, kept: torch.Tensor | None, context: FitContext
    ) -> dict[str, torch.Tensor]:
        """The fitted buffers (name -> tensor) from (N, C, h, w) embeddings of good images, of which the
        patches `kept` (N, h, w) bool lie in the region of interest (None: all)."""

    @abstractmethod
    def _leave_image_out(self, module: nn.Module, train: DataLoader, context: FitContext) -> HeldOutScores:
        """Fit `module` on every image of `train`, and score each image with that model without it and
        its exact duplicates (`duplicate_groups` of the `_embedded` digests)."""

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        module = self._new_module(context)
        embedded = self._embeddings(module, train, context)
        self._load_state(
            module, self._fit_state(embedded.embeddings, embedded.kept_patches(), context), context
        )
        return module

    def _fit_out_of_fold(
        self, train: DataLoader, context: FitContext
    ) -> tuple[nn.Module, np.ndarray, np.ndarray, str]:
        module = self._new_module(context)
        if self.out_of_fold == "leave-image-out":
            held_out = self._leave_image_out(module, train, context)
            return (
                module,
                held_out.scores,
                held_out.maxima,
                f"leave-image-out ({len(held_out.scores)} images)",
            )
        embedded = self._embeddings(module, train, context)
        embeddings, kept = embedded.embeddings, embedded.kept_patches()
        held_out = HeldOutScores(module, embedded.geometries, (self.input_side,) * 2, embedded.inspect)
        folds = assign_folds(embedded.digests, self.calibration_folds, self.seed)
        for fold in progress_bar(np.unique(folds), context.progress, "out-of-fold"):
            inside = folds != fold
            state = self._fit_state(embeddings[inside], None if kept is None else kept[inside], context)
            self._load_state(module, state, context)
            held = np.flatnonzero(folds == fold)
            held_out.score(held, embeddings[held], self.batch_size)
        self._load_state(module, self._fit_state(embeddings, kept, context), context)
        source = f"out-of-fold ({len(np.unique(folds))} folds of {len(folds)} images)"
        return module, held_out.scores, held_out.maxima, source

    @staticmethod
    def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], context: FitContext) -> None:
        for name, value in state.items():
            setattr(module, name, value.to(context.device))

    @staticmethod
    def _embedded(
        module: nn.Module, data: DataLoader, context: FitContext
    ) -> Iterator[tuple[torch.Tensor, Batch]]:
        """Each batch of `data` with its embeddings (B, C, h, w) on the CPU, one batch in memory at a time."""
        for batch in progress_bar(data, context.progress, "features"):
            with torch.inference_mode():  # not around the yield: the consumer runs outside it
                embedded = module.embed(batch.images.to(context.device)).cpu()
            yield embedded, batch

    @classmethod
    def _embeddings(cls, module: nn.Module, data: DataLoader, context: FitContext) -> Embedded:
        """The embeddings of every input of `data`, with their digests, geometries and regions.

        The embeddings are written into one tensor allocated at the first batch, so the cache never exists
        twice (a concatenation would double the peak)."""
        embeddings: torch.Tensor | None = None
        digests: list[bytes] = []
        geometries: list[Geometry] = []
        inspect: list[torch.Tensor | None] = []
        for embedded, batch in cls._embedded(module, data, context):
            if embeddings is None:
                embeddings = torch.empty((len(data.dataset), *embedded.shape[1:]), dtype=embedded.dtype)
            embeddings[len(digests) : len(digests) + len(embedded)] = embedded
            digests += digests_of(batch)
            geometries += batch.geometries
            inspect += batch.inspect or [None] * len(batch)
        return Embedded(embeddings, digests, geometries, inspect)
