"""Anomaly-map smoothing shared by the feature-based detectors."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.transforms.v2.functional import gaussian_blur


def upsample_and_blur(patch_scores: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """(B, h, w) patch scores -> (B, H, W) map: bilinear upsampling, then a Gaussian of `sigma` pixels."""
    maps = F.interpolate(patch_scores[:, None], size=size, mode="bilinear", align_corners=False)
    if sigma > 0:
        kernel = 2 * int(4 * sigma + 0.5) + 1  # covers +-4 sigma, as scipy's gaussian_filter does
        maps = gaussian_blur(maps, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    return maps[:, 0]
