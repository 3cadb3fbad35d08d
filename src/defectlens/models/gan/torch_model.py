"""DCGAN networks and the two AnoGAN scorers as pure torch modules.

One definition builds every output size: a 64, 128 or 256 px image is 4, 5 or 6 doublings of a 4x4
grid. The generator follows Radford et al. (transposed 4x4 convolutions, batch norm, ReLU, tanh
output); the discriminator mirrors it with strided convolutions and LeakyReLU 0.2, optionally under
spectral normalisation (the NEU augmentation configuration), and exposes its last 4x4 feature block
for AnoGAN's discrimination loss. Images live in [-1, 1] inside the networks.

Scoring (Schlegl et al. 2017 and 2019) works on tiles: the whole resized image is one tile, or, when the
GAN was trained on patches, the image is cut into a grid of patch-sized tiles whose maps are stitched
back together and whose scores are reduced by their maximum.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from defectlens.models.autoencoder.torch_model import GRAY_WEIGHTS
from defectlens.models.smoothing import gaussian_blur

GAN_SIZES = (64, 128, 256)
BASE_GRID = 4


def doublings(size: int) -> int:
    """Number of 2x stages between the 4x4 grid and a `size` px image (64 -> 4)."""
    return int(math.log2(size // BASE_GRID))


def stage_widths(width: int, size: int) -> list[int]:
    """Channels of the discriminator's stages from `size` px down to 4x4: `width` doubled per stage,
    at most 8 x `width` (the generator uses them in reverse)."""
    return [width * 2 ** min(i, 3) for i in range(doublings(size))]


class Generator(nn.Module):
    """Latent vectors (B, latent_dim) -> images (B, channels, size, size) in [-1, 1]."""

    def __init__(self, size: int, channels: int, latent_dim: int, width: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        widths = stage_widths(width, size)[::-1]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, widths[0], BASE_GRID, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for previous, out in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(previous, out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z[:, :, None, None])


def down_stack(size: int, channels: int, width: int, spectral_norm: bool) -> nn.Sequential:
    """Strided 4x4 convolutions from a `size` px image to a 4x4 grid: LeakyReLU 0.2, batch norm after
    the first stage (the discriminator's and the encoder's shared body)."""
    layers: list[nn.Module] = []
    previous = channels
    for i, out in enumerate(stage_widths(width, size)):
        conv = nn.Conv2d(previous, out, 4, 2, 1, bias=False)
        layers.append(parametrizations.spectral_norm(conv) if spectral_norm else conv)
        if i > 0:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.LeakyReLU(0.2, True))
        previous = out
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """Images (B, channels, size, size) in [-1, 1] -> real/fake logits (B,); `features` gives the last
    4x4 block flattened (B, F), the intermediate layer of AnoGAN's discrimination loss."""

    def __init__(self, size: int, channels: int, width: int, spectral_norm: bool) -> None:
        super().__init__()
        self.body = down_stack(size, channels, width, spectral_norm)
        head = nn.Conv2d(stage_widths(width, size)[-1], 1, BASE_GRID, 1, 0, bias=False)
        self.head = parametrizations.spectral_norm(head) if spectral_norm else head

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images)).flatten()

    def bake_spectral_norm(self) -> Discriminator:
        """Replace the spectral-norm parametrisations by the normalised weights they currently give, so
        the trained network is a plain one (smaller graph, exportable, reloadable without them)."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self


class Encoder(nn.Module):
    """Images (B, channels, size, size) in [-1, 1] -> latent vectors (B, latent_dim) (f-AnoGAN's E)."""

    def __init__(self, size: int, channels: int, latent_dim: int, width: int) -> None:
        super().__init__()
        self.body = down_stack(size, channels, width, spectral_norm=False)
        self.head = nn.Conv2d(stage_widths(width, size)[-1], latent_dim, BASE_GRID, 1, 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images)).flatten(1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: convolutions N(0, 0.02), batch-norm scales N(1, 0.02) and zero shifts."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            weight = (
                layer.parametrizations.weight.original if parametrize.is_parametrized(layer) else layer.weight
            )
            nn.init.normal_(weight, 0.0, 0.02)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)


def to_gan_range(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, channels, H, W) in [-1, 1], grey when `channels` is 1."""
    if channels == 1:
        images = (images * images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return images * 2 - 1


def to_tiles(images: torch.Tensor, tile: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * H/tile * W/tile, C, tile, tile), row-major tiles per image."""
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // tile, tile, w // tile, tile).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(-1, c, tile, tile)


def from_tiles(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(B * rows * cols, t, t) tile maps -> (B, rows * t, cols * t) maps: the inverse of `to_tiles`."""
    t = tiles.shape[-1]
    return tiles.reshape(-1, rows, cols, t, t).permute(0, 1, 3, 2, 4).reshape(-1, rows * t, cols * t)


class GanScorer(nn.Module):
    """Shared body of both scorers: colour conversion, tiling, stitching and smoothing.

    Subclasses implement `score_tiles`: (N, channels, t, t) tiles in [-1, 1] -> (N,) scores and (N, t, t)
    per-pixel residuals |x - G(z)| averaged over channels.

    Args:
        generator, discriminator: the trained DCGAN (the discriminator without spectral norm).
        image_size: side of the scorer's input, a multiple of `tile_size`.
        tile_size: side of the GAN's images (the whole input, or the patch size).
        channels: 1 or 3, as the GAN was trained.
        blur_sigma: Gaussian smoothing of the residual map in pixels (0: none).
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        image_size: int,
        tile_size: int,
        channels: int,
        blur_sigma: float,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.image_size = image_size
        self.tile_size = tile_size
        self.channels = channels
        self.blur_sigma = blur_sigma
        self.requires_grad_(False)  # scoring never trains the networks

    def score_tiles(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = cols = self.image_size // self.tile_size
        x = to_gan_range(images, self.channels)
        scores, residuals = self.score_tiles(to_tiles(x, self.tile_size))
        maps = gaussian_blur(from_tiles(residuals, rows, cols), self.blur_sigma)
        return scores.reshape(-1, rows * cols).amax(dim=1), maps


class LatentSearchScorer(GanScorer):
    """AnoGAN: for each tile, gradient descent in the latent space on
    (1 - lam) * mean|x - G(z)| + lam * mean|f(x) - f(G(z))|, f = the discriminator's features.

    The search starts, for every tile alike, at the best of a fixed bank of latent vectors (so a tile's
    score does not depend on the batch it comes in), then takes `steps` Adam steps of size `lr`; all
    tiles of a batch are optimised together, each by its own loss. Score = the final combined loss.
    Gradient descent at inference cannot be exported to ONNX: this scorer runs in torch only.
    """

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        *,
        steps: int,
        lr: float,
        lam: float,
        candidates: int,
        seed: int,
        **tiling: Any,
    ) -> None:
        super().__init__(generator, discriminator, **tiling)  # image_size, tile_size, channels, blur_sigma
        self.steps = steps
        self.lr = lr
        self.lam = lam
        bank = torch.randn(candidates, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("latent_bank", bank)

    def combined_loss(self, tiles: torch.Tensor, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(N,) loss of each tile against G(z) of the same row."""
        fake = self.generator(z)
        residual = (tiles - fake).abs().flatten(1).mean(dim=1)
        discrimination = (features - self.discriminator.features(fake)).abs().mean(dim=1)
        return (1 - self.lam) * residual + self.lam * discrimination

    def _start(self, tiles: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Per tile, the bank vector with the lowest combined loss."""
        fakes = self.generator(self.latent_bank)
        fake_features = self.discriminator.features(fakes)
        residual = torch.cdist(tiles.flatten(1), fakes.flatten(1), p=1) / tiles[0].numel()
        discrimination = torch.cdist(features, fake_features, p=1) / features.shape[1]
        best = ((1 - self.lam) * residual + self.lam * discrimination).argmin(dim=1)
        return self.latent_bank[best]

    def score_tiles(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Scoring usually runs under inference_mode; the search needs autograd on z only.
        with torch.inference_mode(False):
            tiles = tiles.clone()
            with torch.no_grad():  # constants of the search: only the path through z is differentiated
                features = self.discriminator.features(tiles)
                start = self._start(tiles, features)
            z = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=self.lr)
            with torch.enable_grad():
                for _ in range(self.steps):
                    optimizer.zero_grad(set_to_none=True)
                    self.combined_loss(tiles, features, z).sum().backward()
                    optimizer.step()
            z = z.detach()
            with torch.no_grad():
                scores = self.combined_loss(tiles, features, z)
                residuals = (tiles - self.generator(z)).abs().mean(dim=1)
        return scores, residuals


class EncoderScorer(GanScorer):
    """f-AnoGAN: one pass z = E(x); score = mean (x - G(z))^2 + kappa * mean (f(x) - f(G(z)))^2."""

    def __init__(
        self,
        generator: Generator,
        discriminator: Discriminator,
        encoder: Encoder,
        kappa: float,
        **tiling: Any,
    ) -> None:
        super().__init__(generator, discriminator, **tiling)  # image_size, tile_size, channels, blur_sigma
        self.encoder = encoder
        self.kappa = kappa
        self.requires_grad_(False)

    def izif_loss(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) izi_f losses (the training objective of E and the anomaly score) and (N, C, t, t) G(E(x))."""
        fake = self.generator(self.encoder(tiles))
        residual = (tiles - fake).pow(2).flatten(1).mean(dim=1)
        features = (self.discriminator.features(tiles) - self.discriminator.features(fake)).pow(2).mean(dim=1)
        return residual + self.kappa * features, fake

    def score_tiles(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, fake = self.izif_loss(tiles)
        return scores, (tiles - fake).abs().mean(dim=1)


__all__ = [
    "GAN_SIZES",
    "Discriminator",
    "Encoder",
    "EncoderScorer",
    "GanScorer",
    "Generator",
    "LatentSearchScorer",
    "from_tiles",
    "init_weights",
    "to_gan_range",
    "to_tiles",
]
