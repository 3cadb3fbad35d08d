"""Set-to-set distances between real and generated images, and the nearest-neighbour copy check.

- Fréchet distance between two Gaussians fitted to feature sets (the FID formula, here in the feature
  space of the default offline backbone, not Inception's, so it is not an FID and is not comparable
  with published FIDs).
- KID-style MMD² (Bińkowski et al., 2018): the unbiased estimator with the cubic polynomial kernel
  k(x, y) = (x·y / d + 1)³, averaged over random subsets, with its standard deviation.
- Copy check: each generated image's nearest training images, compared with how close real images sit
  to each other (leave-one-out).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from scipy import linalg
from sklearn.neighbors import NearestNeighbors

from defectlens.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

COPY_PERCENTILE = 5.0  # a generated image is "close" below this percentile of real-real nearest distances
COPY_MAX_FRACTION = 0.25  # flag when more than this fraction of generated images is close (5x the 5% rate)
EXACT = 1e-4  # an exact copy: nearest distance below this fraction of the median real-real distance


def _features(x: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < min_rows or not np.isfinite(x).all():
        raise DataError(f"{name} must be a finite (N, D) array with N >= {min_rows}, got shape {x.shape}")
    return x


def frechet_from_moments(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖mu1 - mu2‖² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½): the Fréchet (2-Wasserstein²) distance
    between N(mu1, sigma1) and N(mu2, sigma2)."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if np.abs(covmean.imag).max() > 1e-3 * max(1.0, np.abs(covmean.real).max()):
            logger.warning("matrix square root has an imaginary part of %.3g", np.abs(covmean.imag).max())
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets `a` (N, D) and `b` (M, D).

    Biased upward for small sets (it depends on N and M): compare values only at equal set sizes.
    """
    a, b = _features(a, "first feature set"), _features(b, "second feature set")
    return frechet_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, D), (M, D) -> (N, M) cubic polynomial kernel (x·y / D + 1)³, as KID uses."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² estimate between samples `x` (N, D) and `y` (M, D), N, M >= 2, with the cubic
    polynomial kernel: within-set means over i != j, minus twice the cross-set mean. Its expectation is 0
    when both come from one distribution, so it can be negative."""
    x, y = _features(x, "first feature set"), _features(y, "second feature set")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    n, m = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kernel_distance(
    x: np.ndarray, y: np.ndarray, subsets: int = 50, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID-style estimate: mean and standard deviation of `mmd2_unbiased` over `subsets` random subsets
    of `subset_size` rows drawn without replacement from each set (clipped to the smaller set's size).

    Raises:
        ConfigError: `subsets` < 1 or `subset_size` < 2.
    """
    if subsets < 1 or subset_size < 2:
        raise ConfigError(f"subsets must be >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    x, y = _features(x, "first feature set"), _features(y, "second feature set")
    size = min(subset_size, len(x), len(y))
    if size < subset_size:
        logger.info("KID subsets of %d rows (the smaller set's size) instead of %d", size, subset_size)
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def nearest(reference: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances (Q, k) and indices (Q, k) of each query's `k` nearest reference rows, nearest
    first (k is clipped to the reference size)."""
    reference = _features(reference, "reference set", min_rows=1)
    index = NearestNeighbors(n_neighbors=min(k, len(reference))).fit(reference)
    return index.kneighbors(_features(queries, "query set", min_rows=1))


def leave_one_out_nearest(reference: np.ndarray) -> np.ndarray:
    """(N,) distance of each reference row to its nearest other row (itself excluded by index, so an
    exact duplicate elsewhere in the set counts as distance 0)."""
    reference = _features(reference, "reference set")
    distances, _ = NearestNeighbors(n_neighbors=1).fit(reference).kneighbors()
    return distances[:, 0]


@dataclass(frozen=True)
class CopyStats:
    """How close generated images sit to the training images, against real-to-real closeness.

    Attributes:
        threshold: the `percentile`-th percentile of real -> nearest-other-real distances.
        close_fraction: share of generated images whose nearest training image is at most `threshold`
            away (about percentile / 100 for fresh images from the training distribution; `<=`, so exact
            copies count even when the real set holds duplicates and `threshold` is 0).
        flagged: `close_fraction` > `max_fraction`: the generator likely reproduces training images.
        exact_copies: generated images within `EXACT` x the median real-real distance of a training image
            (a tolerance, so float noise in batched features does not hide a copy).
        generated, real: quantiles (min, 5%, 25%, 50%, 75%, max) of the two nearest-distance sets.
        median_ratio: median generated nearest distance / median real-real nearest distance.
    """

    percentile: float
    max_fraction: float
    threshold: float
    close_fraction: float
    flagged: bool
    exact_copies: int
    median_ratio: float
    generated: dict[str, float]
    real: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    points = {"min": 0, "p5": 5, "p25": 25, "median": 50, "p75": 75, "max": 100}
    return {name: float(np.percentile(values, q)) for name, q in points.items()}


def copy_statistics(
    generated_nearest: np.ndarray,
    real_nearest: np.ndarray,
    percentile: float = COPY_PERCENTILE,
    max_fraction: float = COPY_MAX_FRACTION,
) -> CopyStats:
    """The copy rule on nearest distances: generated -> nearest training image, and real -> nearest other
    real image (leave-one-out).

    Raises:
        ConfigError: `percentile` outside (0, 100) or `max_fraction` outside [0, 1).
    """
    if not 0 < percentile < 100:
        raise ConfigError(f"percentile must be in (0, 100), got {percentile}")
    if not 0 <= max_fraction < 1:
        raise ConfigError(f"max_fraction must be in [0, 1), got {max_fraction}")
    generated_nearest, real_nearest = np.asarray(generated_nearest), np.asarray(real_nearest)
    threshold = float(np.percentile(real_nearest, percentile))
    fraction = float(np.mean(generated_nearest <= threshold))
    real_median = float(np.median(real_nearest))
    return CopyStats(
        percentile=percentile,
        max_fraction=max_fraction,
        threshold=threshold,
        close_fraction=fraction,
        flagged=fraction > max_fraction,
        exact_copies=int(np.sum(generated_nearest <= EXACT * real_median)),
        median_ratio=float(np.median(generated_nearest) / real_median) if real_median > 0 else float("inf"),
        generated=_quantiles(generated_nearest),
        real=_quantiles(real_nearest),
    )


__all__ = [
    "COPY_MAX_FRACTION",
    "COPY_PERCENTILE",
    "CopyStats",
    "copy_statistics",
    "frechet_distance",
    "frechet_from_moments",
    "kernel_distance",
    "leave_one_out_nearest",
    "mmd2_unbiased",
    "nearest",
    "polynomial_kernel",
]
