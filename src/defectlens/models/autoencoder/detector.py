"""A reconstruction autoencoder, optionally trained with LAMP loss amplification (Park et al.)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import (
    EpochLoop,
    TrainingSettings,
    cache_images,
    descend,
    in_batches,
    make_optimizer,
    shuffled_batches,
)
from defectlens.core.settings import (
    COLOUR_CHANNELS,
    FRACTION,
    POSITIVE_INT,
    Boolean,
    OneOf,
    Optional,
)
from defectlens.errors import ConfigError, DataError
from defectlens.metrics import image_auroc
from defectlens.models.autoencoder.losses import BASE_LOSSES, SSIM_WINDOW, reconstruction_loss
from defectlens.models.autoencoder.torch_model import IMAGE_SCORES, MAP_METRICS, ConvAutoencoder
from defectlens.models.registry import register
from defectlens.models.trained import TrainedDetector

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "rmsprop", "adam")
DEFAULT_LR = {"sgd": 0.1, "rmsprop": 1e-3, "adam": 1e-3}
SAMPLE_DIR = "samples"
N_SAMPLES = 8


@register("autoencoder")
class Autoencoder(TrainingSettings, TrainedDetector):
    """A convolutional autoencoder learns to reconstruct good images; what it cannot reconstruct is
    anomalous.

    Training minimises a reconstruction loss on good images: L1, L2 or 1 - SSIM, optionally amplified
    element-wise by LAMP, `-log(1 - L_base)` (see `losses`). After each epoch the same loss on the
    validation images (good images held out of training) decides early stopping, and the weights of
    the best epoch are kept; when the validation images include labelled anomalies (label 1), the
    negative image AUROC on them is monitored instead. With a `work_dir`, every epoch writes
    `samples/epoch_NNN.png` there: validation inputs, their reconstructions and error maps.

    Args:
        loss: base reconstruction loss, "l1", "l2" or "ssim".
        lamp: amplify the loss with LAMP.
        optimizer: "sgd", "rmsprop" or "adam".
        lr: learning rate; `None` means 1e-3 for Adam and RMSprop, 0.1 for SGD (the losses are means over
            pixels, so SGD needs a larger step than with the paper's sums).
        momentum: SGD momentum, or Adam's beta1; RMSprop runs without momentum (torch's and Keras's
            default).
        weight_decay: L2 penalty on the weights.
        max_epochs: upper bound on training epochs.
        patience: stop after this many epochs without a better validation value; `None` never stops early.
        channels: 1 to model grey images (RGB inputs are converted inside the model) or 3 for colour.
        depth: stride-2 stages of encoder and decoder; `image_size` must be divisible by 2 ** depth.
        width: channels of the first stage, doubled per stage up to 8 x width.
        latent_dim: size of the bottleneck vector.
        map_metric: per-pixel distance of the anomaly map, "l1", "l2" or "ssim"; `None` follows `loss`.
        blur_sigma: Gaussian smoothing of the anomaly map in pixels.
        image_score: "max", "mean" or "topk" (mean of the `top_k` fraction of largest map pixels).
        top_k: fraction of pixels that "topk" averages, in (0, 1].
        calibration_refits: see `TrainedDetector`; image_size, resize, batch_size and the calibration
            settings: see `Detector`; `batch_size` is also the training batch.
    """

    optimizer: str = setting("adam", OneOf(OPTIMIZERS))
    loss: str = setting("l2", OneOf(BASE_LOSSES))
    lamp: bool = setting(False, Boolean())
    channels: int = setting(3, COLOUR_CHANNELS)
    depth: int = setting(4, POSITIVE_INT)
    width: int = setting(32, POSITIVE_INT)
    latent_dim: int = setting(100, POSITIVE_INT)
    map_metric: str | None = setting(None, Optional(OneOf(MAP_METRICS), "the training loss"))
    blur_sigma: float = setting(2.0)
    image_score: str = setting("max", OneOf(IMAGE_SCORES))
    top_k: float = setting(0.01, FRACTION)  # of the pixels
    image_size: int = setting(128)

    # ----------------------------------------------------------------------------- settings
    def _check_params(self) -> None:
        super()._check_params()
        if self.input_side % 2**self.depth:
            raise ConfigError(
                f"{self._input_setting} must be divisible by 2 ** depth = {2**self.depth} "
                f"(depth {self.depth}), "
                f"got {self.input_side}"
            )
        if int(4 * self.blur_sigma + 0.5) >= self.input_side:
            raise ConfigError(
                f"blur_sigma must be below {self._input_setting} / 4 ({self.input_side / 4:g}), "
                f"got {self.blur_sigma}"
            )
        if "ssim" in (self.loss, self.map_metric) and self.input_side <= SSIM_WINDOW:
            raise ConfigError(
                f"{self._input_setting} must exceed the SSIM window ({SSIM_WINDOW}), got {self.input_side}"
            )

    # ----------------------------------------------------------------------------- module
    def _module(self) -> ConvAutoencoder:
        return ConvAutoencoder(
            image_size=self.input_side,
            channels=self.channels,
            depth=self.depth,
            width=self.width,
            latent_dim=self.latent_dim,
            map_metric=self.map_metric or self.loss,
            blur_sigma=self.blur_sigma,
            image_score=self.image_score,
            top_k=self.top_k,
        )

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._module()

    def _shaped_module(self, n_train_images: int) -> nn.Module:
        return self._module()  # no data-sized state: the weights are the whole model

    def _make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        lr = self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]
        return make_optimizer(self.optimizer, module.parameters(), lr, self.momentum, self.weight_decay)

    # ----------------------------------------------------------------------------- fit
    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        device, progress = context.device, context.progress
        module = self._module().to(device)
        train_images, _ = cache_images(train, progress, "load train")
        with torch.inference_mode():
            batches = in_batches(train_images, 256)
            means = torch.cat([module.prepare(images.to(device)).mean(dim=(2, 3)) for images in batches])
        module.start_at_mean(means.mean(0))
        val_cache, labels = cache_images(val, progress, "load validation images")
        labelled = bool((labels == 1).any() and (labels <= 0).any())
        good_val = val_cache[torch.from_numpy(labels <= 0)]
        if len(good_val) == 0:
            raise DataError("the autoencoder needs good validation images for its validation loss; got none")
        optimizer = self._make_optimizer(module)

        def batch_loss(images: torch.Tensor) -> torch.Tensor:
            target = module.prepare(images.to(device))
            return reconstruction_loss(self.loss, self.lamp, target, module.reconstruct(target))

        def train_epoch(epoch: int) -> dict[str, float]:
            module.train()
            return {"loss": descend(optimizer, shuffled_batches(train_images, self.batch_size), batch_loss)}

        def validate() -> dict[str, float]:
            module.eval()
            values: dict[str, float] = {}
            with torch.inference_mode():
                if len(good_val):
                    losses = [batch_loss(images) for images in in_batches(good_val, self.batch_size)]
                    values["val_loss"] = float(torch.cat(losses).mean())
                if labelled:
                    scores = [module(images.to(device))[0].cpu() for images in in_batches(val_cache, 64)]
                    auroc = image_auroc((labels == 1).astype(int), torch.cat(scores).numpy())
                    values["val_neg_auroc"] = -auroc
            return values

        def save_samples(epoch: int) -> None:
            if context.work_dir is not None:
                path = context.work_dir / SAMPLE_DIR / f"epoch_{epoch + 1:03d}.png"
                save_sample_grid(module, val_cache[:N_SAMPLES], path)

        monitor = "val_neg_auroc" if labelled else "val_loss"
        if labelled:
            logger.info("validation images include labelled anomalies: early stopping on image AUROC")
        loop = EpochLoop(self.max_epochs, self.patience, context, desc="autoencoder")
        state = {"module": module, "optimizer": optimizer}
        self.history_ = loop.run(
            train_epoch,
            state,
            best_of=module,
            validate=validate,
            monitor=monitor,
            on_epoch_end=save_samples,
        )
        return module.eval()

    @torch.inference_mode()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions of a batch of model inputs (B, 3, h, w) in [0, 1] (tiles when tiled):
        (B, channels, h, w) in [0, 1]."""
        module = self.tile_module_
        device = next(module.parameters()).device
        return module.reconstruct(module.prepare(images.to(device))).cpu()


@torch.inference_mode()
def save_sample_grid(module: ConvAutoencoder, images: torch.Tensor, path: Path) -> None:
    """Write a PNG with one column per image: input, reconstruction, anomaly map (jet, 0 = the grid's
    smallest value, red = its largest).

    Args:
        module: the autoencoder being trained (left in eval mode).
        images: (N, 3, H, W) uint8 images.
        path: PNG file; parent folders are created.
    """
    from defectlens.reports.figures import overlay, save_image

    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    batch = images.float().div(255).to(device)
    target = module.prepare(batch)
    recon = module.reconstruct(target)
    maps = module.anomaly_map(target, recon).cpu().numpy()
    module.train(was_training)
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else np.zeros_like(maps)

    def rgb(x: torch.Tensor) -> np.ndarray:
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        return x.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()

    inputs, recons = rgb(target), rgb(recon)
    blank = np.zeros_like(inputs[0])
    columns = [
        np.concatenate([inputs[i], recons[i], overlay(blank, scaled[i], alpha=1.0)], axis=0)
        for i in range(len(inputs))
    ]
    grid = np.concatenate(columns, axis=1)
    repeat = max(1, 96 // images.shape[-2])  # tiny inputs (MNIST, 32 px) are enlarged to be visible
    if repeat > 1:
        grid = grid.repeat(repeat, axis=0).repeat(repeat, axis=1)
    save_image(grid, path)


__all__ = ["Autoencoder", "save_sample_grid"]
