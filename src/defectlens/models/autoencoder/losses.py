"""Reconstruction losses of the autoencoder: L1, L2, SSIM, and their LAMP amplification.

Every base loss is first written per element, as a distance in [0, 1] between target and reconstruction
(both in [0, 1]): `|y - y_hat|` for L1, `(y - y_hat)^2` for L2, and `(1 - SSIM_local) / 2` for SSIM,
where SSIM_local in [-1, 1] is the windowed SSIM at each pixel. LAMP (Park et al., "Neural Network
Training Strategy to Enhance Anomaly Detection Performance: A Perspective on Reconstruction Loss
Amplification", eq. 1) replaces each element `d` by `-log(1 - d)`: equal to `d` for small errors, steeper
and unbounded as `d` approaches 1. The distance is clamped to `[0, 1 - LAMP_EPS]` first, so a saturated
element gives at most `-log(LAMP_EPS)` (13.8) with a finite gradient, never inf or NaN.

The paper sums eq. 1 over pixels and channels; these losses take the mean instead (the sum divided by
H * W * C). Adam and RMSprop are invariant to that constant factor; for SGD it is a rescaled learning rate.

SSIM comes from `pytorch_msssim`. It returns only the mean SSIM of an image, so the local SSIM map (for
LAMP, which needs one value per element, and for the anomaly map) is computed here from the library's own
Gaussian filter, window and constants; `ssim_map(...).mean()` equals `pytorch_msssim.ssim` (tested).
"""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as library_ssim
from pytorch_msssim.ssim import gaussian_filter  # public in the module, not re-exported by the package
from torch.nn import functional as F

BASE_LOSSES = ("l1", "l2", "ssim")
LAMP_EPS = 1e-6
SSIM_WINDOW = 11  # pytorch_msssim's defaults: an 11-tap Gaussian of sigma 1.5, K = (0.01, 0.03)
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)


def ssim_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The (size,) Gaussian window pytorch_msssim builds for `ssim(win_size=size, win_sigma=sigma)`."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def per_channel_window(window: torch.Tensor, channels: int) -> torch.Tensor:
    """A (k,) window as the (channels, 1, 1, k) grouped-convolution kernel pytorch_msssim filters with."""
    return window.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)


def ssim_map(
    target: torch.Tensor, recon: torch.Tensor, window: torch.Tensor | None = None, same_size: bool = False
) -> torch.Tensor:
    """Local SSIM (data range 1) at every pixel and channel.

    Args:
        target, recon: (B, C, H, W) images in [0, 1].
        window: (k,) Gaussian window, or one already shaped (C, 1, 1, k) per channel as pytorch_msssim
            uses it (a module keeps that as a buffer, so an exported graph sees a constant kernel);
            `None` builds pytorch_msssim's default.
        same_size: reflect-pad by k // 2 first, so the map is (B, C, H, W) (for anomaly maps); otherwise
            the map is (B, C, H - k + 1, W - k + 1), exactly the values pytorch_msssim averages.

    Returns:
        SSIM values in [-1, 1].
    """
    window = (ssim_window() if window is None else window).to(target)
    if window.dim() == 1:
        window = per_channel_window(window, target.shape[1])
    if same_size:
        pad = window.shape[-1] // 2
        target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
        recon = F.pad(recon, (pad, pad, pad, pad), mode="reflect")
    c1, c2 = SSIM_K[0] ** 2, SSIM_K[1] ** 2
    mu1, mu2 = gaussian_filter(target, window), gaussian_filter(recon, window)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = gaussian_filter(target * target, window) - mu1_sq
    sigma2_sq = gaussian_filter(recon * recon, window) - mu2_sq
    sigma12 = gaussian_filter(target * recon, window) - mu12
    contrast_structure = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    return (2 * mu12 + c1) / (mu1_sq + mu2_sq + c1) * contrast_structure


def elementwise_distance(
    kind: str,
    target: torch.Tensor,
    recon: torch.Tensor,
    same_size: bool = False,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """The base loss of each element, in [0, 1] for images in [0, 1].

    Args:
        kind: "l1", "l2" or "ssim".
        target, recon: (B, C, H, W) in [0, 1].
        same_size: for "ssim", keep the (H, W) size by reflect padding (see `ssim_map`).
        window: for "ssim", the Gaussian window (see `ssim_map`).

    Returns:
        (B, C, H, W) distances ((B, C, H - 10, W - 10) for "ssim" unless `same_size`).
    """
    if kind == "l1":
        return (target - recon).abs()
    if kind == "l2":
        return (target - recon).square()
    if kind == "ssim":
        return (1 - ssim_map(target, recon, window, same_size)) / 2
    raise ValueError(f"loss must be one of {BASE_LOSSES}, got {kind!r}")


def lamp(distance: torch.Tensor, eps: float = LAMP_EPS) -> torch.Tensor:
    """LAMP of per-element distances in [0, 1]: `-log(1 - d)`, with d clamped to [0, 1 - eps].

    Finite everywhere: at most `-log(eps)`, gradient at most `1 / eps` (0 where the clamp is active).
    """
    return -torch.log1p(-distance.clamp(0.0, 1.0 - eps))


def reconstruction_loss(kind: str, use_lamp: bool, target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Loss of each image: the mean over elements of the base loss, or of its LAMP.

    Base "ssim" is `1 - SSIM` with SSIM from `pytorch_msssim.ssim` (valid windows, data range 1), in
    [0, 2]; its LAMP uses the same local SSIM values as `(1 - SSIM_local) / 2` per element.

    Args:
        kind: "l1", "l2" or "ssim".
        use_lamp: amplify with LAMP.
        target, recon: (B, C, H, W) in [0, 1]; SSIM needs H, W >= 11.

    Returns:
        (B,) losses; training minimises their mean.
    """
    if kind == "ssim" and not use_lamp:
        return 1 - library_ssim(target, recon, data_range=1.0, size_average=False, K=SSIM_K)
    distance = elementwise_distance(kind, target, recon)
    return (lamp(distance) if use_lamp else distance).flatten(1).mean(1)


__all__ = [
    "BASE_LOSSES",
    "LAMP_EPS",
    "elementwise_distance",
    "lamp",
    "per_channel_window",
    "reconstruction_loss",
    "ssim_map",
    "ssim_window",
]
