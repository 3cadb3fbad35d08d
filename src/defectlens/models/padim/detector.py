"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework", ICPR 2020)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.backbones import BackboneSettings, FeatureExtractor
from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.settings import POSITIVE, POSITIVE_INT
from defectlens.errors import ConfigError
from defectlens.models.cross_fit import CrossFitDetector, HeldOutScores, digests_of, duplicate_groups
from defectlens.models.padim.torch_model import PadimModel, squared_distances
from defectlens.models.registry import register


@register("padim")
class Padim(BackboneSettings, CrossFitDetector):
    """A multivariate Gaussian per feature-map position; the score is the Mahalanobis distance.

    Args:
        layers: backbone layers to concatenate (timm `feature_info` indices); backbone and weights: see
            `BackboneSettings`.
        n_features: size of the random channel subset (the paper's dimensionality reduction).
        regularization: epsilon added to each covariance diagonal so it is invertible.
        resize: "squash" by default: PaDiM models each position separately, and padding moves the image
            border from one image to the next; on MTD it measured image AUROC 0.956 squashed, 0.853 padded.
        calibration_folds: see `CrossFitDetector`; image_size, blur_sigma, batch_size and the other shared
            settings: see `Detector`.
    """

    layers: tuple[int, ...] = setting((1, 2, 3))
    n_features: int = setting(100, POSITIVE_INT)
    regularization: float = setting(0.01, POSITIVE)  # so that covariances are invertible

    def _module(self, pretrained: bool, state: Mapping[str, torch.Tensor] | None = None) -> PadimModel:
        weights = Path(self.weights) if self.weights else None
        extractor = FeatureExtractor(self.backbone, tuple(self.layers), weights, pretrained=pretrained)
        if state is None:
            total = sum(extractor.channels)
            if self.n_features > total:
                raise ConfigError(
                    f"n_features must be at most the {total} channels of layers {tuple(self.layers)}, "
                    f"got {self.n_features}"
                )
            generator = torch.Generator().manual_seed(self.seed)
            channels = torch.randperm(total, generator=generator)[: self.n_features].sort().values
            empty = torch.empty(0)
            return PadimModel(extractor, channels, empty, empty, self.blur_sigma)
        shapes = {k: torch.empty_like(state[k]) for k in ("channels", "mean", "inv_covariance")}
        return PadimModel(
            extractor, shapes["channels"], shapes["mean"], shapes["inv_covariance"], self.blur_sigma
        )

    def _new_module(self, context: FitContext) -> PadimModel:
        return self._module(True).to(context.device)

    def _fit_state(
        self, embeddings: torch.Tensor, kept: torch.Tensor | None, context: FitContext
    ) -> dict[str, torch.Tensor]:
        """Per-position means and inverse covariances, accumulated batch by batch in float64.

        Every position keeps its own Gaussian, so a fixed region of interest needs no exclusion: the
        positions outside it are never looked at. (With tiles, a position gathers the same place of every
        tile, outside the region included.)"""
        return self._state(*self._moments(embeddings.split(self.batch_size), context))

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        """Streams the features into the moments: no cache of every image's features."""
        module = self._new_module(context)
        moments = self._moments((e for e, _ in self._embedded(module, train, context)), context)
        self._load_state(module, self._state(*moments), context)
        return module

    def _state(self, mean: torch.Tensor, scatter: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
        return {"mean": mean.float(), "inv_covariance": self._inverse(scatter, count - 1)}

    def _leave_image_out(self, module: nn.Module, train: DataLoader, context: FitContext) -> HeldOutScores:
        """Each image's distances under the Gaussians fitted without it (and its exact duplicates), from
        two passes over the features (moments, then distances) instead of a cache of all of them.

        Removing one image x from n leaves the scatter S - (n / (n - 1)) u u^T (u = x - mean) and moves x
        to (n / (n - 1)) u from the new mean, so by Sherman-Morrison its squared distance is
        k^2 q / (1 - b q) with q = u^T A^-1 u, A = S / (n - 2) + eps I, k = n / (n - 1) and
        b = n / ((n - 1)(n - 2)): one more inverse, no refit per image. A group of duplicates is removed
        from the moments as it is (its copies may differ in the last float bit, which that closed form
        would amplify) and its Gaussians inverted once more.
        """
        digests: list[bytes] = []
        geometries: list = []
        inspect: list = []

        def first_pass() -> Iterator[torch.Tensor]:
            for embedded, batch in self._embedded(module, train, context):
                digests.extend(digests_of(batch))
                geometries.extend(batch.geometries)
                inspect.extend(batch.inspect or [None] * len(batch))
                yield embedded

        mean, scatter, n = self._moments(first_pass(), context)
        self._load_state(module, self._state(mean, scatter, n), context)
        group_of = duplicate_groups(digests)
        sizes = np.bincount(group_of)[group_of]
        if n - sizes.max() < 2:
            raise ConfigError("leave-image-out PaDiM needs 2 training images besides each duplicate group")
        held_out = HeldOutScores(module, geometries, (self.input_side,) * 2, inspect)
        # float64: 1 - b q cancels when an image lies far outside the others' spread
        inverse = self._inverse(scatter, n - 2, torch.float64)
        k, b = n / (n - 1), n / ((n - 1) * (n - 2))
        duplicates: dict[int, torch.Tensor] = {}
        start = 0
        for embedded, _ in self._embedded(module, train, context):
            images = np.arange(start, start + len(embedded))
            start += len(embedded)
            single = sizes[images] == 1
            duplicates.update(
                {int(i): e for i, e in zip(images[~single], embedded[torch.from_numpy(~single)], strict=True)}
            )
            if single.any():
                q = squared_distances(
                    embedded[torch.from_numpy(single)].to(context.device, torch.float64), mean, inverse
                )
                squared = k * k * q / (1 - b * q).clamp_min(1e-12)
                self._record(held_out, images[single], squared, embedded.shape[2:])
        del inverse
        for group in np.unique(group_of[sizes > 1]):
            members = np.flatnonzero(group_of == group)
            vectors = torch.stack([duplicates[int(i)] for i in members]).to(context.device, torch.float64)
            rest = n - len(members)
            flat = vectors.flatten(2).permute(2, 0, 1)  # (P, m, C)
            rest_mean = (n * mean - flat.sum(1)) / rest
            rest_scatter = scatter + n * mean[:, :, None] * mean[:, None, :] - flat.transpose(1, 2) @ flat
            rest_scatter.baddbmm_(rest_mean[:, :, None], rest_mean[:, None, :], alpha=-rest)
            squared = squared_distances(
                vectors, rest_mean, self._inverse(rest_scatter, rest - 1, torch.float64)
            )
            self._record(held_out, members, squared, vectors.shape[2:])
        return held_out

    @staticmethod
    def _record(
        held_out: HeldOutScores, indices: np.ndarray, squared: torch.Tensor, grid: torch.Size
    ) -> None:
        """Keep the scores and maps of (P, B) squared distances on the (h, w) `grid` of the images at
        `indices`."""
        distances = squared.clamp_min(0).sqrt().T.reshape(len(indices), *grid).float()
        with torch.inference_mode():
            held_out.record(indices, *held_out.module.scores_and_maps(distances, held_out.size))

    def _moments(
        self, batches: Iterable[torch.Tensor], context: FitContext
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Per-position float64 means (P, C), scatter matrices (P, C, C) and the number of images, from
        batches of embeddings (B, C, h, w)."""
        count, total, outer = 0, None, None
        for embedded in batches:
            vectors = embedded.to(context.device).double().flatten(2).permute(2, 0, 1)  # (P, B, C)
            if outer is None:
                positions, _, channels = vectors.shape
                total = vectors.new_zeros(positions, channels)
                outer = vectors.new_zeros(positions, channels, channels)
            total += vectors.sum(1)
            outer.baddbmm_(vectors.transpose(1, 2), vectors)  # in place: one (P, C, C) float64 buffer
            count += vectors.shape[1]
        if count < 2:
            raise ConfigError(f"PaDiM needs at least 2 training images for covariances, got {count}")
        mean = total / count
        return mean, outer.baddbmm_(mean[:, :, None], mean[:, None, :], alpha=-count), count

    def _inverse(
        self, scatter: torch.Tensor, divisor: int, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Inverses of the regularised covariances scatter / divisor + eps I, a block of positions at a time
        (bounding the float64 temporaries); `scatter` is left as it is."""
        inverse = torch.empty(scatter.shape, dtype=dtype, device=scatter.device)
        for block in _position_blocks(len(scatter)):
            covariance = scatter[block] / divisor
            covariance.diagonal(dim1=1, dim2=2).add_(self.regularization)
            inverse[block] = torch.linalg.inv(covariance)
        return inverse

    def _shaped_module(self, n_train_images: int) -> nn.Module:
        module = self._module(False)
        positions = (self.input_side // module.extractor.strides[0]) ** 2
        module.mean = torch.zeros(positions, self.n_features)
        module.inv_covariance = torch.zeros(positions, self.n_features, self.n_features)
        return module

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._module(False, state)


def _position_blocks(positions: int, size: int = 512) -> list[slice]:
    return [slice(start, start + size) for start in range(0, positions, size)]
