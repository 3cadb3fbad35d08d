"""Euclidean distances by matrix products: on a CPU far cheaper than torch.cdist, and export-safe."""

from __future__ import annotations

import torch


def nearest_of(
    points: torch.Tensor, points_sq: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance and index of each point's nearest centre; `points_sq` are the points' squared norms.

    min_j ||x - c_j||^2 = ||x||^2 + min_j (||c_j||^2 - 2 x.c_j): one fused addmm, one pass for the minimum.
    """
    partial = torch.addmm((centres * centres).sum(1), points, centres.T, alpha=-2.0)
    best, index = partial.min(1)
    return (best + points_sq).clamp_min_(0).sqrt_(), index


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (len(a), len(b)) by one matrix product: cheaper than torch.cdist on a CPU."""
    squared = (a * a).sum(1, keepdim=True) - 2.0 * (a @ b.T) + (b * b).sum(1)
    return squared.clamp_min_(0).sqrt_()
