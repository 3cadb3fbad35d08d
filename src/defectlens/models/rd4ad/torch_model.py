"""Reverse distillation as a pure torch module: a frozen teacher encoder, a one-class bottleneck that
fuses its layers into a compact embedding, and a student decoder that rebuilds the teacher's layers
from that embedding alone."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from defectlens.backbones import FeatureExtractor
from defectlens.errors import ConfigError
from defectlens.models.smoothing import combine_maps, gaussian_blur


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, so a stride of 2 halves a side rounding up), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DownBlock(nn.Module):
    """ResNet's bottleneck block (1x1, strided 3x3, 1x1 convolutions, projected shortcut), as the paper's
    one-class embedding stage (a ResNet layer4 block of stride 2): halves each side, rounding up.

    Args:
        in_channels: channels of the fused features.
        width: channels of the inner 3x3 convolution.
        out_channels: channels of the embedding.
    """

    def __init__(self, in_channels: int, width: int, out_channels: int) -> None:
        super().__init__()
        self.path = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            conv_bn_relu(width, width, stride=2),
            nn.Conv2d(width, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.path(x) + self.shortcut(x))


class OneClassBottleneck(nn.Module):
    """OCBE: multi-scale feature fusion, then one residual stage to the one-class embedding.

    Teacher layer k is brought to the deepest layer's scale by stride-2 3x3 conv + BN + ReLU steps
    ((n - 1 - k) of them for consecutive layers) whose widths follow the teacher's deeper layers
    (24 -> 40 -> 112 for Lite0, as the paper goes 256 -> 512 -> 1024 on WideResNet-50); the deepest layer
    joins as it is. The concatenation (n x the deepest layer's channels) goes through a stride-2
    bottleneck block.

    Args:
        channels: the teacher layers' channels, shallow to deep.
        strides: their strides, each a power-of-two multiple of the one before (`check_strides`).
        embedding_channels: channels of the embedding, at half the deepest layer's resolution.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], embedding_channels: int) -> None:
        super().__init__()
        channels, strides = list(channels), list(strides)
        self.fusion = nn.ModuleList()
        for k, (width, stride) in enumerate(zip(channels, strides, strict=True)):
            steps, previous = [], width
            while stride < strides[-1]:
                stride *= 2
                # The channels of the shallowest chosen layer at this stride or coarser.
                deeper = next(
                    c for c, s in zip(channels[k + 1 :], strides[k + 1 :], strict=True) if s >= stride
                )
                steps.append(conv_bn_relu(previous, deeper, stride=2))
                previous = deeper
            self.fusion.append(nn.Sequential(*steps))  # empty for the deepest layer: passed through
        fused = channels[-1] * len(channels)
        # As the paper's block (3072 -> 1024 -> 2048 channels), the inner width is half the embedding's.
        self.embed = DownBlock(fused, max(1, embedding_channels // 2), embedding_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Args: teacher maps (B, C_k, h_k, w_k), shallow to deep. Returns: (B, E, ceil(h/2), ceil(w/2))
        where (h, w) is the deepest map's size."""
        fused = torch.cat([step(f) for step, f in zip(self.fusion, features, strict=True)], dim=1)
        return self.embed(fused)


class UpBlock(nn.Module):
    """A residual block that doubles each side: a 2x2 stride-2 transposed convolution and a 3x3
    convolution on one path, a transposed convolution on the shortcut (the decoder block of the paper's
    reference code, with ResNet's basic block shape).

    Args:
        in_channels: channels of the coarser input.
        out_channels: channels at twice the resolution.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.path = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.path(x) + self.shortcut(x))


class RefineBlock(nn.Module):
    """A residual block of two 3x3 convolutions at one resolution whose output stays linear: the
    teacher's EfficientNet layers end in a projection without activation (about half their values are
    negative), which a final ReLU could not reproduce.

    Args:
        channels: channels in and out (the teacher layer's).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.path = nn.Sequential(
            conv_bn_relu(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.path(x)


class StudentDecoder(nn.Module):
    """The teacher mirrored: from the embedding up, per teacher layer (deep to shallow) one `UpBlock` per
    doubling to its resolution (one for consecutive layers) and a `RefineBlock` ending in exactly its
    channels.

    Args:
        channels: the teacher layers' channels, shallow to deep.
        strides: their strides (`check_strides`).
        embedding_channels: channels of the bottleneck's embedding.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], embedding_channels: int) -> None:
        super().__init__()
        stages, previous = [], embedding_channels
        coarser = [*strides[1:], 2 * strides[-1]]  # the embedding is at twice the deepest stride
        for width, stride, above in reversed(list(zip(channels, strides, coarser, strict=True))):
            blocks = []
            while above > stride:
                blocks.append(UpBlock(previous, width))
                previous, above = width, above // 2
            stages.append(nn.Sequential(*blocks, RefineBlock(width)))
        self.stages = nn.ModuleList(stages)

    def forward(self, embedding: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Args: embedding (B, E, h, w); sizes: (h_k, w_k) of each teacher layer, shallow to deep.
        Returns: one (B, C_k, h_k, w_k) map per teacher layer, shallow to deep."""
        maps, x = [], embedding
        for stage, (height, width) in zip(self.stages, reversed(list(sizes)), strict=True):
            # The teacher's stride-2 steps round up (ceil(n / 2)); doubling back gives n + 1 for an odd
            # side n, and the crop keeps the teacher's grid (a no-op when the sides are even).
            x = stage(x)[:, :, :height, :width]
            maps.append(x)
        return maps[::-1]


class ReverseStudent(nn.Module):
    """The trained part: teacher maps -> `OneClassBottleneck` -> `StudentDecoder` -> rebuilt maps.

    Args:
        channels: the teacher layers' channels, shallow to deep.
        strides: their strides (`check_strides`).
        embedding_channels: channels of the one-class embedding.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], embedding_channels: int) -> None:
        super().__init__()
        check_strides(strides)
        self.bottleneck = OneClassBottleneck(channels, strides, embedding_channels)
        self.decoder = StudentDecoder(channels, strides, embedding_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Args: teacher maps (B, C_k, h_k, w_k). Returns: the student's maps of the same shapes."""
        return self.decoder(self.bottleneck(features), [tuple(f.shape[-2:]) for f in features])


def check_strides(strides: Sequence[int]) -> None:
    """The bottleneck and decoder halve and double sides: each layer's stride must be a power-of-two
    multiple (at least 2) of the one before.

    Raises:
        ConfigError: naming the `layers` setting.
    """
    for finer, coarser in itertools.pairwise(strides):
        ratio = coarser // finer
        if coarser % finer or ratio < 2 or ratio & (ratio - 1):
            raise ConfigError(
                "layers must be backbone layers whose strides grow by a power of two (x2, x4, ...) from "
                f"one to the next for the bottleneck and decoder, got strides {list(strides)}"
            )


def layer_distances(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, 1 - cosine similarity over channels at each position: (B, h, w) each, in [0, 2].

    Args:
        teacher: teacher maps (B, C_l, h_l, w_l), one per layer.
        student: student maps of the same shapes.
    """
    return [
        1 - (F.normalize(t, dim=1) * F.normalize(s, dim=1)).sum(1)
        for t, s in zip(teacher, student, strict=True)
    ]


def rd4ad_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """The paper's loss (Eq. 2): per layer the mean over positions of 1 - cosine similarity, summed
    over layers.

    Args:
        teacher: teacher maps (B, C_l, h_l, w_l), one per layer.
        student: student maps of the same shapes.

    Returns:
        (B,) loss of each image; training minimises their mean.
    """
    return torch.stack([d.mean(dim=(1, 2)) for d in layer_distances(teacher, student)]).sum(0)


class Rd4adModel(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and anomaly maps (B, H, W).

    Export-safe: a backbone, convolutions, transposed convolutions, fixed crops, cosine distances,
    bilinear resizing, a separable Gaussian and a max; the layer loops are fixed when the module is built.

    Args:
        teacher: frozen pretrained backbone returning the chosen layers.
        student: bottleneck and decoder trained to rebuild the teacher's layers on good images.
        blur_sigma: Gaussian smoothing of the summed map in input pixels (0: none).
    """

    def __init__(self, teacher: FeatureExtractor, student: ReverseStudent, blur_sigma: float = 4.0) -> None:
        super().__init__()
        self.teacher = teacher
        self.student = student
        self.blur_sigma = blur_sigma

    def anomaly_map(
        self, teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, H, W) map from teacher and student features: per-layer cosine distances, summed, blurred."""
        summed = combine_maps(layer_distances(teacher, student), size, "sum")
        return gaussian_blur(summed, self.blur_sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = self.teacher(images)
        maps = self.anomaly_map(teacher, self.student(teacher), images.shape[-2:])
        return maps.amax(dim=(1, 2)), maps


def embedding_width(channels: Sequence[int], embedding_channels: int | None) -> int:
    """`embedding_channels`, or by default twice the deepest layer's channels (224 for Lite0's layer 3).

    The paper's embedding is 2048 channels at half the resolution of WideResNet-50's 1024-channel
    layer3: twice the channels on a quarter of the positions, half the deepest layer's values. Keeping
    that ratio, rather than the absolute 2048, keeps the bottleneck as compact relative to a narrow
    teacher (Lite0's deepest layer has 112 channels) as it is in the paper.
    """
    return embedding_channels if embedding_channels is not None else 2 * channels[-1]


def build_model(
    backbone: str,
    layers: tuple[int, ...],
    weights: str | Path | None,
    pretrained: bool,
    embedding_channels: int | None,
    blur_sigma: float,
) -> Rd4adModel:
    """A teacher (pretrained unless `pretrained` is False, for loading a saved model) and a fresh student."""
    teacher = FeatureExtractor(backbone, layers, weights, pretrained=pretrained)
    width = embedding_width(teacher.channels, embedding_channels)
    student = ReverseStudent(teacher.channels, teacher.strides, width)
    return Rd4adModel(teacher, student, blur_sigma)
