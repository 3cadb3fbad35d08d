"""PaDiM as a pure torch module: per-position Gaussians over a random channel subset."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from defectlens.backbones import FeatureExtractor
from defectlens.models.smoothing import upsample_and_blur


class PadimModel(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and Mahalanobis maps (B, H, W).

    Args:
        extractor: frozen backbone returning the layers to concatenate.
        channels: (C,) indices of the concatenated channels kept (the paper's random subset).
        mean: (P, C) per-position mean over good images, P = h * w of the first layer.
        inv_covariance: (P, C, C) inverse of each position's regularised covariance.
        blur_sigma: Gaussian smoothing of the anomaly map in pixels.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        channels: torch.Tensor,
        mean: torch.Tensor,
        inv_covariance: torch.Tensor,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.register_buffer("channels", channels)
        self.register_buffer("mean", mean)
        self.register_buffer("inv_covariance", inv_covariance)
        self.blur_sigma = blur_sigma

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Concatenated, channel-subsampled features (B, C, h, w) at the first layer's resolution."""
        features = self.extractor(images)
        size = features[0].shape[-2:]
        features = [
            f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="nearest") for f in features
        ]
        return torch.cat(features, dim=1).index_select(1, self.channels)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_embedding(self.embed(images), images.shape[-2:])

    def score_embedding(
        self, embedding: torch.Tensor, size: tuple[int, int] | torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and Mahalanobis maps (B, *size) of embeddings (B, C, h, w) from `embed`."""
        batch, _, height, width = embedding.shape
        squared = squared_distances(embedding, self.mean, self.inv_covariance)
        return self.scores_and_maps(squared.clamp_min(0).sqrt().T.reshape(batch, height, width), size)

    def scores_and_maps(
        self, distances: torch.Tensor, size: tuple[int, int] | torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and maps (B, *size) of per-position Mahalanobis distances (B, h, w)."""
        maps = upsample_and_blur(distances, size, self.blur_sigma)
        return maps.amax(dim=(1, 2)), maps


def squared_distances(embedding: torch.Tensor, mean: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """(P, B) squared Mahalanobis distances of embeddings (B, C, h, w) or (B, C, P) to per-position means
    (P, C) under per-position inverse covariances (P, C, C)."""
    batch, channels = embedding.shape[:2]
    # (P, B, C), contiguous: bmm on the permuted view was 7x slower here
    delta = (embedding.reshape(batch, channels, -1).permute(2, 0, 1) - mean[:, None]).contiguous()
    return (torch.bmm(delta, inverse) * delta).sum(-1)
