"""RD4AD (Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding", CVPR 2022)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import (
    cache_images,
    descend,
    frozen_features,
    shuffled_indices,
)
from defectlens.core.settings import Integer, Optional
from defectlens.models.rd4ad.torch_model import Rd4adModel, build_model, rd4ad_loss
from defectlens.models.registry import register
from defectlens.models.trained import FrozenBackboneDetector


@register("rd4ad")
class Rd4ad(FrozenBackboneDetector):
    """A student decoder learns to rebuild a pretrained teacher's features of good images from a compact
    one-class embedding of them; where it fails, the image is anomalous.

    The teacher (encoder) is frozen. A one-class bottleneck fuses its layers into one embedding at half
    the deepest layer's resolution, and the decoder, the teacher mirrored, rebuilds every layer from it
    alone. Training minimises, per layer, the mean over positions of 1 - the cosine similarity (over
    channels) of teacher and student features, summed over layers; the anomaly map is the per-layer
    cosine distances upsampled to input size, summed and smoothed, and the image score its maximum.
    The student's input is the teacher's features, so they are computed once and every epoch trains on
    them. After each epoch the loss on the validation images (good images held out of training) decides
    early stopping, and the student of the best epoch is kept. When the validation images include
    labelled anomalies (label 1), the negative image AUROC on them is monitored instead of the loss.

    Args:
        backbone: timm model name of the teacher.
        layers: teacher layers to rebuild (timm `feature_info` indices, strides growing by powers of two);
            (1, 2, 3) is the equivalent of ResNet's layer1..layer3 (strides 4, 8, 16), the paper's. The
            default (2, 3) drops the stride-4 layer, as for STFPM: on MTD it measured image AUROC 0.784
            against 0.696 with (1, 2, 3) and squashed images (docs/detectors.md).
        weights: teacher weight file; `None` uses packaged or cached ImageNet weights.
        optimizer: "adam" (the paper) or "sgd".
        lr: learning rate; `None` means 0.005 for Adam (the paper) and 0.05 for SGD.
        momentum: Adam's beta1 (0.5, the paper), or SGD momentum.
        weight_decay: L2 penalty on the bottleneck's and decoder's weights.
        max_epochs: upper bound on training epochs (the paper trains 200); an epoch on MTD's 686 good
            images at 256 px took 5 s on 2 CPU cores with layers (2, 3), 9 s with (1, 2, 3).
        patience: stop after this many epochs without a better validation value; `None` never stops early.
        embedding_channels: channels of the one-class embedding; `None` means twice the deepest layer's
            (224 for tf_efficientnet_lite0's layer 3), the paper's ratio (2048 for WideResNet-50's 1024).
        blur_sigma: Gaussian smoothing of the anomaly map in pixels.
        resize: "pad" by default (keeps the aspect ratio; the paper squashes).
        calibration_refits: see `TrainedDetector`; image_size, batch_size and the calibration settings: see
            `Detector`; `batch_size` is also the training batch.

    `preset="paper"` (`--preset paper`) restores the paper's layers and resize.
    """

    presets: ClassVar = {"paper": {"layers": (1, 2, 3), "resize": "squash"}}

    default_lr: ClassVar = {"adam": 0.005, "sgd": 0.05}
    momentum: float = setting(0.5)
    embedding_channels: int | None = setting(None, Optional(Integer(2), "twice the deepest layer's channels"))

    def _module(self, pretrained: bool) -> Rd4adModel:
        return build_model(
            self.backbone,
            tuple(self.layers),
            self.weights,
            pretrained,
            self.embedding_channels,
            self.blur_sigma,
        )

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        device, progress = context.device, context.progress
        module = self._module(pretrained=True).to(device)
        train_images, _ = cache_images(train, progress, "load train")
        val_images, labels = cache_images(val, progress, "load val")
        size = tuple(val_images.shape[-2:])
        # The frozen teacher's features are the student's input and its targets: computed once, kept in
        # float16 (139 KB per 256 px image for layers (2, 3) of tf_efficientnet_lite0; 96 MB for MTD's
        # 686 training images), and the images themselves are no longer needed.
        train_features = frozen_features(
            module.teacher, train_images, self.batch_size, progress, "teacher train"
        )
        val_features = frozen_features(module.teacher, val_images, self.batch_size, progress, "teacher val")
        n_train, n_val = len(train_images), len(val_images)
        del train_images, val_images
        student = module.student  # bottleneck and decoder: the teacher stays frozen, in eval mode
        optimizer = self._optimizer(student.parameters())

        def batch_losses(index: torch.Tensor) -> torch.Tensor:
            features = [f[index].to(device).float() for f in train_features]
            return rd4ad_loss(features, student(features))

        def train_epoch(epoch: int) -> dict[str, float]:
            student.train()
            batches = shuffled_indices(n_train, self.batch_size)
            return {"loss": descend(optimizer, batches, batch_losses)}

        def validate(labelled: bool) -> tuple[float, list[torch.Tensor]]:
            student.eval()
            total, scores = 0.0, []
            with torch.inference_mode():
                for start in range(0, n_val, self.batch_size):
                    features = [f[start : start + self.batch_size].to(device).float() for f in val_features]
                    rebuilt = student(features)
                    total += float(rd4ad_loss(features, rebuilt).sum())
                    if labelled:
                        maps = module.anomaly_map(features, rebuilt, size)
                        scores.append(maps.amax(dim=(1, 2)).cpu())
            return total / n_val, scores

        state = {"student": student, "optimizer": optimizer}
        self._train_epochs(train_epoch, validate, labels, state, student, context)
        return module.eval()


__all__ = ["Rd4ad"]
