"""Pretrained timm feature extractors that stop at the deepest layer a detector needs."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.models._features_fx import FeatureGraphNet
from torch import nn
from torch.nn import functional as F

from defectlens.backbones.weights import load_pretrained
from defectlens.core.estimator import setting, settings_dataclass
from defectlens.core.settings import AnyOf, FilePath, Integer, Items, Optional, Text
from defectlens.errors import ConfigError

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
# Checks of `BackboneSettings.backbone` and `.weights` for detectors that also take several backbones side
# by side (`feature_extractor`).
BACKBONES = AnyOf((Text(), Items(Text(), min_length=2)))
BACKBONE_WEIGHTS = Optional(
    AnyOf((FilePath(), Items(Optional(FilePath()), min_length=2))),
    "packaged or cached ImageNet weights; with several backbones, one entry (or None) each",
)


@settings_dataclass
class BackboneSettings:
    """The settings of a detector built on a frozen backbone, for an estimator to inherit.

    Args:
        backbone: timm model name of the frozen network.
        layers: backbone layers whose features the detector uses (timm `feature_info` indices).
        weights: backbone weight file; `None` uses packaged or cached ImageNet weights.
    """

    backbone: str = setting(DEFAULT_BACKBONE, Text())
    layers: tuple[int, ...] = setting((2, 3), Items(Integer(0)))
    weights: str | None = setting(None, Optional(FilePath(), "packaged or cached ImageNet weights"))


def _create(name: str) -> nn.Module:
    if name not in timm.list_models():
        close = timm.list_models(f"*{name.split('_')[-1]}*")[:8]
        raise ConfigError(f"backbone must be a timm model name, got '{name}' (similar names: {close})")
    return timm.create_model(name, pretrained=False, num_classes=0)


def describe_layers(name: str) -> list[dict]:
    """The feature layers of backbone `name`: index, module, channels and stride (for `layers=`)."""
    model = _create(name)
    return [
        {"index": i, "module": info["module"], "channels": info["num_chs"], "stride": info["reduction"]}
        for i, info in enumerate(model.feature_info)
    ]


class FeatureExtractor(nn.Module):
    """Maps an RGB batch in [0, 1] to the feature maps of the chosen backbone layers.

    The backbone's own input normalisation is part of the module, so exported graphs take plain
    [0, 1] images. The graph is traced with torch.fx, so layers after the deepest one requested
    are never computed.

    Args:
        name: a timm model name.
        layers: indices into the backbone's `feature_info` (timm's `out_indices`).
        weights: an explicit weight file; `None` looks for packaged or cached weights.
        pretrained: `False` builds the architecture only, for loading a saved detector.
    """

    def __init__(
        self,
        name: str = DEFAULT_BACKBONE,
        layers: tuple[int, ...] = (2, 3),
        weights: str | Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        model = _create(name)
        n_layers = len(model.feature_info)
        if not layers or any(not 0 <= i < n_layers for i in layers) or list(layers) != sorted(set(layers)):
            raise ConfigError(
                f"layers must be increasing indices in [0, {n_layers - 1}] for backbone '{name}', "
                f"got {tuple(layers)}; see describe_layers('{name}')"
            )
        if pretrained:
            load_pretrained(model, name, weights)
        cfg = model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.channels = [model.feature_info[i]["num_chs"] for i in layers]
        self.strides = [model.feature_info[i]["reduction"] for i in layers]
        # channels_last: oneDNN's convolutions run 1.4-1.6x faster in it on a 2-core AVX2 CPU (256 px).
        body = FeatureGraphNet(model, out_indices=tuple(layers)).eval()
        self.body = body.to(memory_format=torch.channels_last)
        for parameter in self.body.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        # A frozen extractor keeps its ImageNet batch-norm statistics whatever the caller asks.
        return super().train(False)

    def __deepcopy__(self, memo: dict) -> FeatureExtractor:
        # torch.fx rebuilds a GraphModule it copies in training mode: a copied detector would normalise
        # with each batch's statistics, and its scores would depend on the batch.
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self.__dict__, memo))
        return copied.train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (B, 3, H, W) in [0, 1]. Returns: one (B, C_i, H/s_i, W/s_i) map per layer."""
        normalised = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return list(self.body(normalised))


class BackboneEnsemble(nn.Module):
    """Several frozen extractors run on the same images; their feature maps form one list, member by
    member, layer by layer, and `channels` and `strides` follow that order.

    Args:
        names: timm model names, two or more.
        layers: the layers taken from each.
        weights: one weight file (or None: packaged or cached) per name.
        pretrained: `False` builds the architectures only, for loading a saved detector.
    """

    def __init__(
        self,
        names: Sequence[str],
        layers: tuple[int, ...],
        weights: Sequence[str | Path | None],
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            FeatureExtractor(name, layers, weight, pretrained)
            for name, weight in zip(names, weights, strict=True)
        )
        self.channels = [c for member in self.members for c in member.channels]
        self.strides = [s for member in self.members for s in member.strides]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [features for member in self.members for features in member(images)]


def feature_extractor(
    backbone: str | Sequence[str],
    layers: tuple[int, ...],
    weights: str | Path | Sequence[str | Path | None] | None,
    pretrained: bool = True,
) -> FeatureExtractor | BackboneEnsemble:
    """A `FeatureExtractor` for one backbone name, or a `BackboneEnsemble` for a list of names.

    Raises:
        ConfigError: several backbones with one weight file, or with a list of weights of another length.
    """
    if isinstance(backbone, str):
        return FeatureExtractor(backbone, layers, weights, pretrained)  # type: ignore[arg-type]
    if weights is None:
        weights = [None] * len(backbone)
    if isinstance(weights, str | Path) or len(weights) != len(backbone):
        raise ConfigError(
            f"weights must list one file (or None) per backbone for {len(backbone)} backbones "
            f"{list(backbone)}, got {weights!r}"
        )
    return BackboneEnsemble(backbone, layers, weights, pretrained)


def locally_aware_patches(features: list[torch.Tensor]) -> torch.Tensor:
    """PatchCore's locally aware patch features: each (B, C_i, h_i, w_i) map averaged over 3 x 3
    neighbourhoods, resized bilinearly to the first map's grid and concatenated: (B, sum C_i, h_0, w_0)."""
    features = [F.avg_pool2d(f, kernel_size=3, stride=1, padding=1) for f in features]
    size = features[0].shape[-2:]
    features = [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear") for f in features]
    return torch.cat(features, dim=1)
