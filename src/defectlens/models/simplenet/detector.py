"""SimpleNet (Liu et al., "SimpleNet: A Simple Network for Image Anomaly Detection and Localization",
CVPR 2023)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.backbones import FeatureExtractor, locally_aware_patches
from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import cache_images, descend, frozen_features, shuffled_indices
from defectlens.core.settings import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Integer, Items
from defectlens.models.registry import register
from defectlens.models.simplenet.torch_model import SimpleNetModel, discriminator, truncated_l1
from defectlens.models.trained import FrozenBackboneDetector


@register("simplenet")
class SimpleNet(FrozenBackboneDetector):
    """A discriminator learns to tell good patch features from the same features with Gaussian noise
    added; where it doubts a patch is good, the image is anomalous.

    The backbone is frozen, so every training and validation image's patch features are computed once and
    kept in memory (float16) for all epochs. Each step adapts the standardised features of a batch of
    images, adds Gaussian noise to a copy, and trains adaptor and discriminator together on the paper's
    truncated L1 loss (good logits above +margin, noisy ones below -margin). We follow the paper's
    SimpleNet rather than SuperSimpleNet: its one extra ingredient that needs no labels, Perlin-shaped noise
    masks, adds a mask generator per step for a gain reported on other backbones. After each epoch the
    same loss on the held-out good images (with noise from a fixed seed) decides early stopping, and the
    epoch with the lowest one is kept; with labelled anomalies among the validation images, the negative
    image AUROC on them is monitored instead.

    Args:
        backbone: timm model name of the frozen feature extractor.
        layers: two or more mid-level backbone layers (timm `feature_info` indices), combined into locally
            aware patch features as in PatchCore.
        weights: backbone weight file; `None` uses packaged or cached ImageNet weights.
        hidden: width of the discriminator's hidden layer (the paper: 1024).
        noise_std: standard deviation of the noise added to the adapted features, in units of each
            channel's spread over the good training patches (the features are standardised first).
        margin: the loss's th+ = th- (the paper: 0.5).
        optimizer: "adam" (the paper) or "sgd", for adaptor and discriminator.
        lr: learning rate of the discriminator (the paper: 2e-4); `None` means 2e-4.
        adaptor_lr: learning rate of the adaptor (the paper: a tenth of its base rate, 1e-4).
        momentum: Adam's beta1, or SGD momentum.
        weight_decay: L2 penalty on adaptor and discriminator weights (the paper: 1e-5).
        max_epochs: upper bound on training epochs (passes over the training images).
        patience: stop after this many epochs without a better validation value; `None` never stops early.
        blur_sigma: Gaussian smoothing of the anomaly map in pixels (the paper: 4).
        resize: "pad" by default: the discriminator scores each patch wherever it lies, as PatchCore's
            search does, so the aspect ratio can be kept.
        calibration_refits: see `TrainedDetector`; image_size, batch_size (also the training batch, in
            images) and the calibration settings: see `Detector`.
    """

    default_lr: ClassVar = {"adam": 2e-4, "sgd": 2e-4}
    layers: tuple[int, ...] = setting((2, 3), Items(Integer(0), min_length=2))
    hidden: int = setting(1024, POSITIVE_INT)
    noise_std: float = setting(0.25, POSITIVE)
    margin: float = setting(0.5, NON_NEGATIVE)
    adaptor_lr: float = setting(1e-4, POSITIVE)
    weight_decay: float = setting(1e-5)
    max_epochs: int = setting(40)

    def _module(self, pretrained: bool) -> SimpleNetModel:
        extractor = FeatureExtractor(self.backbone, tuple(self.layers), self.weights, pretrained=pretrained)
        channels = sum(extractor.channels)
        return SimpleNetModel(
            extractor,
            torch.zeros(channels),
            torch.ones(channels),
            nn.Conv2d(channels, channels, 1),
            discriminator(channels, self.hidden),
            self.blur_sigma,
        )

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        device = context.device
        module = self._module(pretrained=True).to(device)
        train_features, _ = self._features(module, train, context, "train")
        val_features, labels = self._features(module, val, context, "val")
        # Per-channel spread and mean of the training patches, 16 channels at a time in float32.
        stats = [torch.std_mean(chunk.float(), dim=(0, 2, 3)) for chunk in train_features.split(16, dim=1)]
        scale, mean = torch.cat([std for std, _ in stats]), torch.cat([mean for _, mean in stats])
        module.mean, module.scale = mean.to(device), scale.clamp_min(1e-6).to(device)
        trained = nn.ModuleList([module.adaptor, module.discriminator])
        optimizer = self._optimizer(
            [
                {"params": module.adaptor.parameters(), "lr": self.adaptor_lr},
                {"params": module.discriminator.parameters()},
            ]
        )

        def losses(features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            adapted = module.adapt(features.to(device).float())
            noise = torch.randn(adapted.shape, generator=generator).to(device)
            logits = module.discriminator(torch.cat([adapted, adapted + self.noise_std * noise]))
            good, noisy = logits.split(len(adapted))
            return truncated_l1(good, noisy, self.margin)

        def train_epoch(epoch: int) -> dict[str, float]:
            trained.train()
            batches = shuffled_indices(len(train_features), self.batch_size)
            return {"loss": descend(optimizer, batches, lambda index: losses(train_features[index]))}

        def validate(labelled: bool) -> tuple[float, list[torch.Tensor]]:
            trained.eval()
            generator = torch.Generator().manual_seed(self.seed)  # the same noise every epoch
            total, scores = 0.0, []
            with torch.inference_mode():
                for features in val_features.split(self.batch_size):
                    total += float(losses(features, generator).sum())
                    if labelled:
                        size = (self.input_side,) * 2
                        scores.append(module.score_embedding(features.to(device).float(), size)[0].cpu())
            return total / len(val_features), scores

        self._train_epochs(
            train_epoch, validate, labels, {"trained": trained, "optimizer": optimizer}, trained, context
        )
        return module.eval()

    def _features(
        self, module: SimpleNetModel, data: DataLoader, context: FitContext, split: str
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Patch features (N, C, h, w) in float16 on the CPU and (N,) labels of every image of `data`."""
        images, labels = cache_images(data, context.progress, f"load {split}")
        (features,) = frozen_features(
            module.extractor,
            images,
            self.batch_size,
            context.progress,
            f"features {split}",
            lambda maps: [locally_aware_patches(maps)],  # as `SimpleNetModel.embed`
        )
        return features, labels


__all__ = ["SimpleNet"]
