"""STFPM as a pure torch module: a frozen teacher, a trained student, per-layer feature distances."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from defectlens.backbones import FeatureExtractor
from defectlens.models.smoothing import combine_maps, gaussian_blur


class StudentExtractor(FeatureExtractor):
    """A `FeatureExtractor` whose weights learn: random initialisation, gradients on, `train()` obeyed.

    It keeps the teacher's architecture, layers and input normalisation (the backbone's ImageNet mean
    and std), so both networks see identical inputs.
    """

    def __init__(self, name: str, layers: tuple[int, ...]) -> None:
        super().__init__(name, layers, weights=None, pretrained=False)
        for parameter in self.body.parameters():
            parameter.requires_grad_(True)

    def train(self, mode: bool = True) -> StudentExtractor:
        # FeatureExtractor pins eval mode for frozen backbones; a student's batch norms must learn.
        return nn.Module.train(self, mode)


def normalize(features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each (B, C, h, w) map divided by its channel L2 norm at every position (the paper's F-hat)."""
    return [F.normalize(f, p=2.0, dim=1) for f in features]


def layer_distances(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, 0.5 * ||t_hat - s_hat||^2 over channels at each position: (B, h, w) each.

    Args:
        teacher: channel-normalised teacher maps (B, C_l, h_l, w_l), one per layer.
        student: channel-normalised student maps of the same shapes.
    """
    return [0.5 * (t - s).pow(2).sum(1) for t, s in zip(teacher, student, strict=True)]


def stfpm_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """The paper's loss: per layer (1/2) (1/(h w)) sum_ij ||t_hat - s_hat||^2, summed over layers.

    Args:
        teacher: channel-normalised teacher maps (B, C_l, h_l, w_l), one per layer.
        student: channel-normalised student maps of the same shapes.

    Returns:
        (B,) loss of each image; training minimises their mean.
    """
    return torch.stack([d.mean(dim=(1, 2)) for d in layer_distances(teacher, student)]).sum(0)


class StfpmModel(nn.Module):
    """Maps images (B, 3, H, W) in [0, 1] to image scores (B,) and anomaly maps (B, H, W).

    Export-safe: two backbones, normalisation, squared differences, bilinear resizing, a separable
    Gaussian and a max; the layer loop and the combination choice are fixed when the module is built.

    Args:
        teacher: frozen pretrained backbone returning the chosen layers.
        student: same architecture and layers, trained to reproduce the teacher on good images.
        map_combination: "product" (the paper) or "sum" of the upsampled per-layer maps.
        blur_sigma: Gaussian smoothing of the combined map in input pixels (0: none).
    """

    def __init__(
        self,
        teacher: FeatureExtractor,
        student: StudentExtractor,
        map_combination: str = "product",
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.student = student
        self.map_combination = map_combination
        self.blur_sigma = blur_sigma

    def anomaly_map(
        self, teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, H, W) map from channel-normalised teacher and student features."""
        combined = combine_maps(layer_distances(teacher, student), size, self.map_combination)
        return gaussian_blur(combined, self.blur_sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = normalize(self.teacher(images))
        student = normalize(self.student(images))
        maps = self.anomaly_map(teacher, student, images.shape[-2:])
        return maps.amax(dim=(1, 2)), maps


def build_pair(
    backbone: str, layers: tuple[int, ...], weights: Path | None, pretrained: bool
) -> tuple[FeatureExtractor, StudentExtractor]:
    """A teacher (pretrained unless `pretrained` is False, for loading a saved model) and a fresh student."""
    teacher = FeatureExtractor(backbone, layers, weights, pretrained=pretrained)
    return teacher, StudentExtractor(backbone, layers)
