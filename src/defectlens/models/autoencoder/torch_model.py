"""A convolutional autoencoder as a pure torch module: reconstruction, anomaly map and image score.

The architecture follows the AE baseline of the MVTec AD paper (Bergmann et al., CVPR 2019): strided
4x4 convolutions with leaky ReLUs halve the image `depth` times, a convolution as large as the remaining
grid maps it to a `latent_dim` vector, and a mirrored decoder of transposed convolutions rebuilds the
image, ending in a sigmoid so reconstructions lie in [0, 1] like the inputs. No batch normalisation, so a
batch of one trains like any other (the LAMP paper studies batch sizes down to 1).
"""

from __future__ import annotations

import torch
from torch import nn

from defectlens.models.autoencoder.losses import elementwise_distance, per_channel_window, ssim_window
from defectlens.models.smoothing import gaussian_blur

MAP_METRICS = ("l1", "l2", "ssim")
IMAGE_SCORES = ("max", "mean", "topk")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def stage_widths(width: int, depth: int) -> list[int]:
    """Channels after each encoder stage: `width` doubled per stage, at most 8 x `width`."""
    return [width * 2 ** min(i, 3) for i in range(depth)]


class ConvAutoencoder(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and anomaly maps (B, H, W).

    Export-safe: convolutions, a fixed grey conversion, element-wise distances, reflect padding, a
    separable Gaussian, and a max, mean or top-k; every choice is fixed when the module is built.

    Args:
        image_size: side of the square input; must be divisible by 2 ** depth.
        channels: 1 (the RGB input is converted to grey inside the module) or 3.
        depth: number of stride-2 stages in the encoder (and the decoder).
        width: channels of the first stage; doubled per stage up to 8 x width.
        latent_dim: size of the bottleneck vector.
        map_metric: per-pixel distance of the anomaly map: "l1", "l2" or "ssim" ((1 - local SSIM) / 2),
            averaged over channels.
        blur_sigma: Gaussian smoothing of the map in pixels (0: none).
        image_score: "max" of the map, "mean" of the map, or "topk": mean of the `top_k` largest pixels.
        top_k: fraction of the pixels averaged by "topk", in (0, 1].
    """

    def __init__(
        self,
        image_size: int,
        channels: int = 3,
        depth: int = 4,
        width: int = 32,
        latent_dim: int = 100,
        map_metric: str = "l2",
        blur_sigma: float = 2.0,
        image_score: str = "max",
        top_k: float = 0.01,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        self.map_metric = map_metric
        self.blur_sigma = blur_sigma
        self.image_score = image_score
        self.top_k_pixels = max(1, round(top_k * image_size * image_size))
        self.register_buffer("gray_weights", torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("ssim_window", per_channel_window(ssim_window(), channels), persistent=False)
        widths = stage_widths(width, depth)
        grid = image_size // 2**depth
        encoder: list[nn.Module] = []
        previous = channels
        for out in widths:
            encoder += [nn.Conv2d(previous, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            previous = out
        encoder.append(nn.Conv2d(previous, latent_dim, grid))  # (B, latent_dim, 1, 1)
        decoder: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, previous, grid), nn.LeakyReLU(0.2)]
        for out in [*widths[-2::-1], width]:
            decoder += [nn.ConvTranspose2d(previous, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            previous = out
        decoder += [nn.Conv2d(previous, channels, 3, padding=1), nn.Sigmoid()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation for the leaky ReLUs, zero biases.

        PyTorch's default initialisation shrinks activations at every layer of this unnormalised stack:
        the untrained decoder's output ignores the input, L2 training on MNIST then drives the sigmoid's
        logits to -100s for every pixel within 30 Adam steps and the reconstruction stays black for
        good (measured: validation MSE equal to the mean squared pixel value). With He initialisation
        the input reaches the output from the first step.
        """
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
                # A transposed convolution's weight is (in, out, k, k): its fan-in is in * k * k ("fan_out").
                mode = "fan_out" if isinstance(layer, nn.ConvTranspose2d) else "fan_in"
                nn.init.kaiming_normal_(layer.weight, a=0.2, mode=mode, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def start_at_mean(self, mean: torch.Tensor) -> None:
        """Set the output layer's bias to the logit of `mean` (channels,), the training targets' mean, so that
        the untrained decoder's output is centred there instead of on 0.5.

        From 0.5, plain L2 on mostly black images (MNIST: mean 0.13) first learns to darken every pixel, and
        Adam's first steps, each as large as the learning rate on every weight, pushed the sigmoid's logits
        so far below zero that its gradient vanished: the reconstruction stayed black for good on 3 of 10
        digits (docs/lamp.md). Starting at the mean leaves nothing to darken.
        """
        output = self.decoder[-2]
        output.bias.copy_(torch.logit(mean.clamp(0.01, 0.99).to(output.bias)))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The reconstruction target: (B, 3, H, W) RGB as is, or (B, 1, H, W) grey when channels is 1."""
        if self.channels == 1:
            return (images * self.gray_weights).sum(dim=1, keepdim=True)
        return images

    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W) in [0, 1] -> reconstruction of the same shape in [0, 1]."""
        return self.decoder(self.encoder(target))

    def anomaly_map(self, target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """(B, H, W) per-pixel target-reconstruction distance, averaged over channels, smoothed."""
        distance = elementwise_distance(self.map_metric, target, recon, True, self.ssim_window).mean(dim=1)
        return gaussian_blur(distance, self.blur_sigma)

    def score(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, H, W) maps -> (B,) image scores."""
        if self.image_score == "max":
            return maps.amax(dim=(1, 2))
        if self.image_score == "mean":
            return maps.mean(dim=(1, 2))
        return maps.flatten(1).topk(self.top_k_pixels, dim=1).values.mean(dim=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.prepare(images)
        maps = self.anomaly_map(target, self.reconstruct(target))
        return self.score(maps), maps


__all__ = ["IMAGE_SCORES", "MAP_METRICS", "ConvAutoencoder", "stage_widths"]
