"""SimpleNet as a pure torch module: frozen patch features, a feature adaptor, a patch discriminator."""

from __future__ import annotations

import torch
from torch import nn

from defectlens.backbones import FeatureExtractor, locally_aware_patches
from defectlens.models.smoothing import upsample_and_blur


def discriminator(channels: int, hidden: int) -> nn.Sequential:
    """The paper's two-layer MLP, applied to every patch as 1 x 1 convolutions: (B, C, h, w) -> (B, 1, h, w)
    logits, high for good patches. Batch norm over patches behaves as the paper's BatchNorm1d."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1),
        nn.BatchNorm2d(hidden),
        nn.LeakyReLU(0.2),
        nn.Conv2d(hidden, 1, 1, bias=False),
    )


def truncated_l1(good: torch.Tensor, noisy: torch.Tensor, margin: float) -> torch.Tensor:
    """The paper's loss (Eq. 6): max(0, margin - D(good)) + max(0, margin + D(noisy)), averaged per image.

    Args:
        good, noisy: (B, 1, h, w) discriminator logits of adapted good features and of the same with noise.
        margin: th+ = th- of the paper (0.5): logits beyond it on the right side cost nothing.

    Returns:
        (B,) loss of each image.
    """
    return (torch.relu(margin - good) + torch.relu(margin + noisy)).mean(dim=(1, 2, 3))


class SimpleNetModel(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and anomaly maps (B, H, W).

    Export-safe: a frozen backbone, average pooling, bilinear resizing, 1 x 1 convolutions, a separable
    Gaussian and a max.

    Args:
        extractor: frozen backbone returning two or more feature maps.
        mean, scale: (C,) per-channel mean and standard deviation of the good training patches: features are
            standardised before the adaptor, so the noise level is in units of each channel's spread.
        adaptor: 1 x 1 convolution C -> C (the paper's one-layer feature adaptor).
        discriminator: `discriminator(C, hidden)`.
        blur_sigma: Gaussian smoothing of the anomaly map, in input pixels.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        mean: torch.Tensor,
        scale: torch.Tensor,
        adaptor: nn.Conv2d,
        discriminator: nn.Sequential,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.register_buffer("mean", mean)
        self.register_buffer("scale", scale)
        self.adaptor = adaptor
        self.discriminator = discriminator
        self.blur_sigma = blur_sigma

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features (B, C, h, w), not yet standardised."""
        return locally_aware_patches(self.extractor(images))

    def adapt(self, embedding: torch.Tensor) -> torch.Tensor:
        """Standardised, adapted features (B, C, h, w) of embeddings from `embed`."""
        standardised = (embedding - self.mean[:, None, None]) / self.scale[:, None, None]
        return self.adaptor(standardised)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_embedding(self.embed(images), images.shape[-2:])

    def score_embedding(
        self, embedding: torch.Tensor, size: tuple[int, int] | torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores (B,) and maps (B, *size): each patch's negative discriminator logit, upsampled and
        smoothed; the image score is the map's maximum."""
        patch_scores = -self.discriminator(self.adapt(embedding))[:, 0]
        maps = upsample_and_blur(patch_scores, size, self.blur_sigma)
        return maps.amax(dim=(1, 2)), maps
