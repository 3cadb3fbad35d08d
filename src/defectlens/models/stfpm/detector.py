"""STFPM (Wang et al., "Student-Teacher Feature Pyramid Matching for Anomaly Detection", BMVC 2021)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import (
    FLIPS,
    cache_images,
    descend,
    frozen_features,
    in_batches,
    random_flips,
    shuffled_indices,
)
from defectlens.core.settings import Items, OneOf
from defectlens.models.registry import register
from defectlens.models.smoothing import MAP_COMBINATIONS
from defectlens.models.stfpm.torch_model import StfpmModel, build_pair, normalize, stfpm_loss
from defectlens.models.trained import FrozenBackboneDetector


@register("stfpm")
class Stfpm(FrozenBackboneDetector):
    """A student network learns to reproduce a pretrained teacher's features on good images; where it
    fails, the image is anomalous.

    Training minimises, per layer, half the mean squared distance between the channel-normalised
    teacher and student features, summed over layers. After each epoch the loss on the validation
    images (good images held out of training) decides early stopping, and the student of the best
    epoch is kept. When the validation images include labelled anomalies (label 1), the negative
    image AUROC on them is monitored instead of the loss.

    Args:
        backbone: timm model name of teacher and student.
        layers: backbone layers to match (timm `feature_info` indices); (1, 2, 3) is the equivalent of
            ResNet's layer1..layer3 (strides 4, 8, 16), the paper's choice. The default (2, 3) drops the
            stride-4 layer, whose discrepancy on fine texture is mostly noise (docs/stfpm.md).
        weights: teacher weight file; `None` uses packaged or cached ImageNet weights.
        optimizer: "adam" (the default: with it the validation loss falls smoothly on MTD, where SGD at
            lr 0.4 jumps from epoch to epoch) or "sgd" (the paper).
        lr: learning rate; `None` means 0.4 for SGD (the paper) and 1e-3 for Adam.
        momentum: SGD momentum, or Adam's beta1.
        weight_decay: L2 penalty on the student's weights.
        max_epochs: upper bound on training epochs.
        patience: stop after this many epochs without a better validation value; `None` never stops early.
        map_combination: "sum" (the default) or "product" (the paper) of the per-layer maps upsampled to
            input size.
        blur_sigma: Gaussian smoothing of the anomaly map in pixels (the paper: 4).
        resize: "pad" by default (keeps the aspect ratio; the paper squashes).
        flips: augmentation of the training images: each is mirrored along each named axis
            ("horizontal", "vertical") with probability 1/2 per epoch, for parts whose good look does not
            depend on orientation; the teacher's targets are then computed per batch instead of cached.
        calibration_refits: see `TrainedDetector`; image_size, batch_size and the calibration
            settings: see `Detector`; `batch_size` is also the training batch.

    The defaults are the settings measured best on MTD (docs/stfpm.md: image AUROC 0.857 against 0.695
    with the paper's); `preset="paper"` (`--preset paper`) restores the paper's.
    """

    default_lr: ClassVar = {"sgd": 0.4, "adam": 1e-3}
    presets: ClassVar = {
        "paper": {
            "layers": (1, 2, 3),
            "optimizer": "sgd",
            "lr": None,
            "map_combination": "product",
            "blur_sigma": 4.0,
            "resize": "squash",
        }
    }

    weight_decay: float = setting(1e-4)
    map_combination: str = setting("sum", OneOf(MAP_COMBINATIONS))
    blur_sigma: float = setting(8.0)
    flips: tuple[str, ...] = setting((), Items(OneOf(FLIPS), min_length=0))

    def _module(self, pretrained: bool) -> StfpmModel:
        weights = Path(self.weights) if self.weights else None
        teacher, student = build_pair(self.backbone, tuple(self.layers), weights, pretrained)
        return StfpmModel(teacher, student, self.map_combination, self.blur_sigma)

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        device, progress = context.device, context.progress
        module = self._module(pretrained=True).to(device)
        train_images, _ = cache_images(train, progress, "load train")
        val_cache, labels = cache_images(val, progress, "load val")
        # Teacher features of unflipped images never change: normalised once, kept in float16 (336 KB
        # per 256 px image for layers (1, 2, 3) of tf_efficientnet_lite0; 230 MB for MTD's 686 images).
        train_targets = (
            None
            if self.flips
            else frozen_features(
                module.teacher, train_images, self.batch_size, progress, "teacher train", normalize
            )
        )
        val_targets = frozen_features(
            module.teacher, val_cache, self.batch_size, progress, "teacher val", normalize
        )
        student = module.student
        optimizer = self._optimizer(student.parameters())

        def batch_losses(index: torch.Tensor) -> torch.Tensor:
            images = train_images[index].float().div_(255).to(device)
            if train_targets is None:
                images = random_flips(images, tuple(self.flips))
                with torch.no_grad():
                    targets = normalize(module.teacher(images))
            else:
                targets = [t[index].to(device).float() for t in train_targets]
            return stfpm_loss(targets, normalize(student(images)))

        def train_epoch(epoch: int) -> dict[str, float]:
            student.train()
            batches = shuffled_indices(len(train_images), self.batch_size)
            # Summed over the batch as in the authors' code (MSELoss(reduction="sum")): lr 0.4 is tuned
            # for that; a batch mean shrinks every step by the batch size and stalls training.
            return {"loss": descend(optimizer, batches, batch_losses, reduction="sum")}

        def validate(labelled: bool) -> tuple[float, list[torch.Tensor]]:
            student.eval()
            total, scores = 0.0, []
            with torch.inference_mode():
                for start, images in zip(
                    range(0, len(val_cache), self.batch_size),
                    in_batches(val_cache, self.batch_size),
                    strict=True,
                ):
                    images = images.to(device)
                    targets = [t[start : start + self.batch_size].to(device).float() for t in val_targets]
                    predicted = normalize(student(images))
                    total += float(stfpm_loss(targets, predicted).sum())
                    if labelled:
                        maps = module.anomaly_map(targets, predicted, images.shape[-2:])
                        scores.append(maps.amax(dim=(1, 2)).cpu())
            return total / len(val_cache), scores

        state = {"student": student, "optimizer": optimizer}
        self._train_epochs(train_epoch, validate, labels, state, student, context)
        return module.eval()


__all__ = ["Stfpm"]
