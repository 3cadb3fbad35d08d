"""Out-of-fold calibration for detectors fitted from frozen backbone features (PatchCore, PaDiM).

One backbone pass caches every good training image's embedding. Each of k folds is then scored by a
model fitted on the embeddings of the other folds (a coreset or a set of Gaussians: seconds, no second
backbone pass), and a last fit on all of them is the model that ships. Every good image thus gets a score
from a model that did not see it, and the thresholds are fitted on all of those scores.

Exact duplicates (the same pixels after resizing) always share a fold, so a copy of an image in the
training set never vouches for it.
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

from defectlens.data.transforms import Geometry
from defectlens.errors import ConfigError, DataError
from defectlens.models.base import Detector, FitContext, progress_bar


def assign_folds(digests: list[bytes], folds: int, seed: int) -> np.ndarray:
    """Fold index of each image: identical digests get the same fold, and the distinct images are dealt
    to `folds` folds (fewer when there are fewer distinct images) in a seeded random order.

    Raises:
        DataError: fewer than 2 distinct images.
    """
    groups, group_of = np.unique(np.array(digests, dtype=object), return_inverse=True)
    if len(groups) < 2:
        raise DataError(
            f"out-of-fold calibration needs at least 2 distinct good images, got {len(groups)} "
            f"(in {len(digests)} images)"
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    fold_of_group = np.empty(len(groups), dtype=int)
    fold_of_group[order] = np.arange(len(groups)) % min(folds, len(groups))
    return fold_of_group[group_of]


def _digest(image: torch.Tensor) -> bytes:
    return hashlib.blake2b(image.numpy().tobytes(), digest_size=16).digest()


class CrossFitDetector(Detector):
    """A detector whose fitted state is a function of per-image embeddings of a frozen backbone.

    Subclasses build the module (`_new_module`, with a torch module that has `embed(images)` -> (B, C, h, w)
    and `score_embedding(embedding, size)` -> (scores, maps)) and compute the fitted buffers from
    embeddings (`_fit_state`); fitting and out-of-fold calibration stay here.

    Args:
        calibration_folds: folds of the out-of-fold calibration (at least 2; fewer when there are fewer
            distinct images).
        Other settings: see `Detector`.
    """

    calibration_scores: ClassVar[str] = "out-of-fold"

    def __init__(self, *, calibration_folds: int = 5, **base: Any) -> None:
        super().__init__(**base)
        self.calibration_folds = calibration_folds

    def _check_params(self) -> None:
        super()._check_params()
        folds = self.calibration_folds
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ConfigError(f"calibration_folds must be an integer >= 2, got {folds!r}")

    @abstractmethod
    def _new_module(self, context: FitContext) -> nn.Module:
        """The module with its pretrained backbone and unfitted (empty) state, on `context.device`."""

    @abstractmethod
    def _fit_state(self, embeddings: torch.Tensor, context: FitContext) -> dict[str, torch.Tensor]:
        """The fitted buffers (name -> tensor) from (N, C, h, w) embeddings of good images."""

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
        folds = assign_folds(digests, self.calibration_folds, self.seed)
        scores, maxima = np.empty(len(folds)), np.empty(len(folds))
        size = self.input_resize.size
        for fold in progress_bar(np.unique(folds), context.progress, "out-of-fold"):
            self._load_state(module, self._fit_state(embeddings[folds != fold], context), context)
            held_out = np.flatnonzero(folds == fold)
            for start in range(0, len(held_out), self.batch_size):
                chunk = held_out[start : start + self.batch_size]
                with torch.inference_mode():
                    chunk_scores, maps = module.score_embedding(embeddings[chunk].to(context.device), size)
                scores[chunk] = chunk_scores.float().cpu().numpy()
                chunk_maps = maps.float().cpu().numpy()
                maxima[chunk] = [
                    geometries[i].crop_content(m).max() for i, m in zip(chunk, chunk_maps, strict=True)
                ]
        self._load_state(module, self._fit_state(embeddings, context), context)
        return module, scores, maxima, f"out-of-fold ({len(np.unique(folds))} folds of {len(folds)} images)"

    @staticmethod
    def _load_state(module: nn.Module, state: Mapping[str, torch.Tensor], context: FitContext) -> None:
        for name, value in state.items():
            setattr(module, name, value.to(context.device))

    @staticmethod
    def _embeddings(
        module: nn.Module, data: DataLoader, context: FitContext
    ) -> tuple[torch.Tensor, list[bytes], list[Geometry]]:
        """(N, C, h, w) embeddings on the CPU, a digest of each resized image, and each one's geometry."""
        embeddings, digests, geometries = [], [], []
        with torch.inference_mode():
            for batch in progress_bar(data, context.progress, "features"):
                embeddings.append(module.embed(batch.images.to(context.device)).cpu())
                digests += [_digest(image) for image in batch.images]
                geometries += batch.geometries
        return torch.cat(embeddings), digests, geometries
