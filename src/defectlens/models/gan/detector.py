"""AnoGAN (Schlegl et al., IPMI 2017) and f-AnoGAN (Schlegl et al., MedIA 2019) on a DCGAN.

Both detectors train the same DCGAN on good images only, with the GAN value function V(D, G) (binary
cross-entropy; the generator maximises log D(G(z)), the usual non-saturating form). AnoGAN then scores an
image by searching the latent space for the generated image closest to it; f-AnoGAN trains an encoder
(izi_f: image -> z -> image, with a feature-matching term) so scoring is a single forward pass.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from defectlens.core.context import FitContext
from defectlens.core.estimator import setting
from defectlens.core.loop import STATE_FILE, EpochLoop, cache_images, descend, shuffled_batches
from defectlens.core.settings import (
    COLOUR_CHANNELS,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Boolean,
    Integer,
    Items,
    OneOf,
    Optional,
    Real,
)
from defectlens.data.inputs import as_dataset, loader
from defectlens.errors import ConfigError, DataError
from defectlens.models.gan.torch_model import (
    GAN_SIZES,
    Discriminator,
    Encoder,
    EncoderScorer,
    GanScorer,
    Generator,
    LatentSearchScorer,
    init_weights,
    to_gan_range,
    to_tiles,
)
from defectlens.models.registry import register
from defectlens.models.trained import TrainedDetector

logger = logging.getLogger(__name__)

SAMPLE_DIR = "samples"
N_SAMPLES = 64


class DcganDetector(TrainedDetector):
    """What AnoGAN and f-AnoGAN share: the DCGAN, its training and its settings.

    Args:
        latent_dim: length of the latent vector z ~ N(0, I).
        width: channels of the discriminator's first stage (the generator's last); doubled per stage
            up to 8 x width.
        channels: 1 (images are converted to grey) or 3 (RGB).
        spectral_norm: spectral normalisation of the discriminator's convolutions while training.
        g_lr, d_lr: Adam learning rates of generator and discriminator.
        betas: Adam's (beta1, beta2) for both.
        max_epochs: GAN training epochs (no early stopping: a GAN's losses do not say when it is done).
        patch_size: `None` trains on whole images resized to `image_size` (64, 128 or 256); a size of
            64, 128 or 256 trains on random patches of that size cut from images resized to
            `image_size` (a multiple of it), and scores an image tile by tile.
        blur_sigma: Gaussian smoothing of the residual map in pixels.
        calibration_refits: see `TrainedDetector`; 0 by default here, GAN training being too costly to
            repeat. image_size, resize, batch_size and the calibration settings: see `Detector`;
            `batch_size` is also the training batch.
    """

    latent_dim: int = setting(100, POSITIVE_INT)
    width: int = setting(64, POSITIVE_INT)
    channels: int = setting(3, COLOUR_CHANNELS)
    spectral_norm: bool = setting(True, Boolean())
    g_lr: float = setting(1e-4, POSITIVE)
    d_lr: float = setting(4e-4, POSITIVE)
    betas: tuple[float, float] = setting(
        (0.5, 0.999), Items(Real(0, 1, closed="left"), min_length=2, max_length=2)
    )
    max_epochs: int = setting(100, POSITIVE_INT)
    patch_size: int | None = setting(None, Optional(OneOf(GAN_SIZES), "whole images"))
    blur_sigma: float = setting(2.0)
    image_size: int = setting(64)
    batch_size: int = setting(32)
    calibration_refits: int = setting(0)

    # ----------------------------------------------------------------------------- settings
    @property
    def gan_size(self) -> int:
        """Side of the images the GAN generates: the patch size, or the whole input."""
        return self.patch_size or self.input_side

    def _check_params(self) -> None:
        super()._check_params()
        if self.patch_size is None and self.input_side not in GAN_SIZES:
            raise ConfigError(
                f"{self._input_setting} must be one of {GAN_SIZES} for a GAN on whole images, "
                f"got {self.input_side} "
                "(or set patch_size to train on patches of a larger image)"
            )
        if self.patch_size is not None and self.input_side % self.patch_size:
            raise ConfigError(
                f"patch_size must divide {self._input_setting} {self.input_side}, got {self.patch_size!r}"
            )
        if 4 * self.blur_sigma >= self.input_side:
            raise ConfigError(f"blur_sigma must be below {self._input_setting} / 4, got {self.blur_sigma}")

    def _networks(self) -> tuple[Generator, Discriminator]:
        size = self.gan_size
        return (
            Generator(size, self.channels, self.latent_dim, self.width),
            Discriminator(size, self.channels, self.width, self.spectral_norm),
        )

    def plain_networks(self) -> tuple[Generator, Discriminator]:
        """The architecture of a trained GAN as saved: spectral norm already baked into the weights."""
        size = self.gan_size
        return (
            Generator(size, self.channels, self.latent_dim, self.width),
            Discriminator(size, self.channels, self.width, spectral_norm=False),
        )

    # ----------------------------------------------------------------------------- GAN training
    def _training_tiles(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Float batch in [0, 1] (B, 3, S, S) -> GAN input (B, channels, t, t) in [-1, 1]: the whole image,
        or one random patch per image."""
        x = to_gan_range(batch.to(device), self.channels)
        if self.patch_size is None:
            return x
        last = self.input_side - self.patch_size
        rows, cols = torch.randint(0, last + 1, (2, len(x))).tolist()
        return torch.stack(
            [
                img[:, r : r + self.patch_size, c : c + self.patch_size]
                for img, r, c in zip(x, rows, cols, strict=True)
            ]
        )

    def _train_gan(self, images: torch.Tensor, context: FitContext) -> tuple[Generator, Discriminator]:
        """Train the DCGAN on cached uint8 images (N, 3, S, S); returns it with spectral norm baked in."""
        device = context.device
        generator, discriminator = (net.to(device) for net in self._networks())
        init_weights(generator)
        init_weights(discriminator)
        g_optimizer = torch.optim.Adam(generator.parameters(), lr=self.g_lr, betas=tuple(self.betas))
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=self.d_lr, betas=tuple(self.betas))
        fixed_noise = torch.randn(
            N_SAMPLES, self.latent_dim, generator=torch.Generator().manual_seed(self.seed)
        )
        batch_size = min(self.batch_size, len(images))

        def train_epoch(epoch: int) -> dict[str, float]:
            generator.train()
            discriminator.train()
            sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
            steps = 0
            for batch in shuffled_batches(images, batch_size):
                real = self._training_tiles(batch, device)
                fake = generator(torch.randn(len(real), self.latent_dim, device=device))
                real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
                d_loss = F.binary_cross_entropy_with_logits(
                    real_logits, torch.ones_like(real_logits)
                ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                d_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                d_optimizer.step()
                fooled = discriminator(fake)
                g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
                g_optimizer.zero_grad(set_to_none=True)
                g_loss.backward()
                g_optimizer.step()
                sums["d_loss"] += d_loss.item()
                sums["g_loss"] += g_loss.item()
                sums["d_real"] += torch.sigmoid(real_logits).mean().item()
                sums["d_fake"] += torch.sigmoid(fake_logits).mean().item()
                steps += 1
            return {key: value / max(steps, 1) for key, value in sums.items()}

        def save_samples(epoch: int) -> None:
            if context.work_dir is not None:
                from defectlens.reports.figures import save_image

                generator.eval()
                with torch.inference_mode():
                    grid = sample_grid(generator(fixed_noise.to(device)))
                save_image(grid, context.work_dir / SAMPLE_DIR / f"epoch_{epoch + 1:03d}.png")

        loop = EpochLoop(self.max_epochs, None, _phase(context, "gan"), desc="GAN")
        state = {
            "generator": generator,
            "discriminator": discriminator,
            "g_opt": g_optimizer,
            "d_opt": d_optimizer,
        }
        self.history_ = loop.run(train_epoch, state, on_epoch_end=save_samples)
        return generator.eval(), discriminator.bake_spectral_norm().eval()

    def train_gan(
        self, data: Any, progress: bool = False, work_dir: str | Path | None = None, resume: bool = False
    ) -> tuple[Generator, Discriminator]:
        """Train only the DCGAN on every image of `data` (no validation split, no scorer, no thresholds):
        for generating images, e.g. to augment a rare defect class.

        Args:
            data: images in any form `fit` accepts (a folder, paths, Records, uint8 arrays).
            progress: show progress bars.
            work_dir: folder for the training state, history and per-epoch sample grids.
            resume: continue from the state in `work_dir`.

        Returns:
            The trained generator and discriminator (spectral norm baked in), in eval mode.
        """
        self.check_params()
        context = FitContext.create(self.device, progress, work_dir, resume)
        torch.manual_seed(self.seed)
        images = loader(as_dataset(data, self.input_resize), self.batch_size)
        return self._train_gan(_cache(images, context), context)

    def generate(self, n: int, seed: int = 0) -> np.ndarray:
        """`n` images from the fitted detector's generator (see `generate_images`)."""
        self.check_is_fitted()
        return generate_images(self.module_.generator, n, seed)

    def _scorer(self, generator: Generator, discriminator: Discriminator) -> GanScorer:
        """The fitted module: the detector's scorer around the trained (or placeholder) networks."""
        raise NotImplementedError

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._scorer(*self.plain_networks())

    def _shaped_module(self, n_train_images: int) -> nn.Module:
        return self._scorer(*self.plain_networks())  # no data-sized state: the networks are the model

    def _scorer_settings(self) -> dict[str, Any]:
        return {
            "image_size": self.input_side,
            "tile_size": self.gan_size,
            "channels": self.channels,
            "blur_sigma": self.blur_sigma,
        }


def _phase(context: FitContext, name: str, optional: bool = False) -> FitContext:
    """The context of one training phase, with its own state folder. An `optional` phase (one that
    starts only after another finished) is resumed only if it has state; a required one without state
    makes the resume fail with a CheckpointError naming the folder."""
    if context.work_dir is None:
        return context
    folder = context.work_dir / name
    resume = context.resume and (not optional or (folder / STATE_FILE).is_file())
    return dataclasses.replace(context, work_dir=folder, resume=resume)


def generate_images(generator: Generator, n: int, seed: int = 0) -> np.ndarray:
    """`n` images from `generator`: uint8 (n, t, t) grey or (n, t, t, 3) RGB, reproducible from `seed`.

    Raises:
        ConfigError: `n` is not a positive integer.
    """
    POSITIVE_INT("the number of images", n)
    device = next(generator.parameters()).device
    noise = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    generator.eval()
    with torch.inference_mode():
        images = torch.cat([generator(z.to(device)).cpu() for z in noise.split(256)])
    return to_uint8(images)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W) for C = 1 or (N, H, W, 3) for C = 3."""
    array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def sample_grid(images: torch.Tensor, columns: int = 8) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one uint8 picture with the images in rows of `columns`, 2 px apart."""
    from torchvision.utils import make_grid

    grid = make_grid(
        images.float().cpu().clamp(-1, 1), nrow=columns, padding=2, normalize=True, value_range=(-1, 1)
    )
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(array[..., 0]) if images.shape[1] == 1 else array


def _cache(train: DataLoader, context: FitContext) -> torch.Tensor:
    images, _ = cache_images(train, context.progress, "load train")
    if len(images) < 2:
        raise DataError(f"a GAN needs at least 2 training images, got {len(images)}")
    return images


@register("anogan")
class AnoGAN(DcganDetector):
    """AnoGAN: a DCGAN learns good images; an image is scored by how well any generated image can match
    it, found by gradient descent in the latent space (see `LatentSearchScorer`).

    Args:
        search_steps: Adam steps of the latent search per image.
        search_lr: learning rate of the latent search.
        lam: weight of the discrimination (feature-matching) loss, 1 - lam for the residual loss.
        search_candidates: fixed latent vectors the search may start from (the best one per image).
        Other settings: see `DcganDetector`.
    """

    exportable = False  # the latent search is gradient descent at inference time

    search_steps: int = setting(100, Integer(0))
    search_lr: float = setting(0.05, POSITIVE)
    lam: float = setting(0.1, Real(0, 1))
    search_candidates: int = setting(64, POSITIVE_INT)

    def _scorer(self, generator: Generator, discriminator: Discriminator) -> LatentSearchScorer:
        return LatentSearchScorer(
            generator,
            discriminator,
            **self._scorer_settings(),
            steps=self.search_steps,
            lr=self.search_lr,
            lam=self.lam,
            candidates=self.search_candidates,
            seed=self.seed,
        )

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        return self._scorer(*self._train_gan(_cache(train, context), context)).to(context.device)

    @classmethod
    def from_gan(cls, trained: DcganDetector, val: Any, progress: bool = False, **search: Any) -> Self:
        """An AnoGAN that searches the latent space of another detector's trained GAN (e.g. an f-AnoGAN's,
        to compare the two scorers on one GAN), calibrated on `val`.

        Args:
            trained: a fitted GAN detector.
            val: validation images for the thresholds, in any form `calibrate` accepts.
            search: search settings (search_steps, search_lr, lam, search_candidates).
        """
        trained.check_is_fitted()
        shared = {k: v for k, v in trained.get_params().items() if k in cls.param_names()}
        detector = cls(**{**shared, **search})
        detector.check_params()
        module = trained.module_
        detector.module_ = detector._scorer(module.generator, module.discriminator).eval()
        return detector.calibrate(val, progress=progress)


@register("fanogan")
class FAnoGAN(DcganDetector):
    """f-AnoGAN: the DCGAN of AnoGAN plus an encoder trained afterwards (izi_f: minimise
    mean (x - G(E(x)))^2 + kappa * mean (f(x) - f(G(E(x))))^2 with G and D fixed), so scoring an image is
    one forward pass; the score is the same izi_f loss.

    Args:
        encoder_epochs: upper bound on encoder training epochs.
        encoder_lr: Adam learning rate of the encoder (betas as the GAN's).
        encoder_patience: stop the encoder after this many epochs without a lower validation loss;
            `None` never stops early. The encoder of the best epoch is kept.
        kappa: weight of the feature term in training and scoring.
        Other settings: see `DcganDetector`.
    """

    encoder_epochs: int = setting(50, POSITIVE_INT)
    encoder_lr: float = setting(1e-4, POSITIVE)
    encoder_patience: int | None = setting(10, Optional(POSITIVE_INT, "no early stopping"))
    kappa: float = setting(1.0, NON_NEGATIVE)

    def _scorer(self, generator: Generator, discriminator: Discriminator) -> EncoderScorer:
        encoder = Encoder(self.gan_size, self.channels, self.latent_dim, self.width)
        return EncoderScorer(generator, discriminator, encoder, **self._scorer_settings(), kappa=self.kappa)

    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        device = context.device
        images = _cache(train, context)
        val_images, labels = cache_images(val, context.progress, "load validation images")
        good_val = val_images[torch.from_numpy(labels <= 0)]
        if len(good_val) == 0:
            raise DataError("f-AnoGAN needs good validation images to stop the encoder's training; got none")
        scorer = self._scorer(*self._train_gan(images, context)).to(device).eval()
        encoder = scorer.encoder
        init_weights(encoder)
        encoder.requires_grad_(True)
        optimizer = torch.optim.Adam(encoder.parameters(), lr=self.encoder_lr, betas=tuple(self.betas))
        batch_size = min(self.batch_size, len(images))

        def train_epoch(epoch: int) -> dict[str, float]:
            encoder.train()
            batches = shuffled_batches(images, batch_size)
            losses = descend(
                optimizer, batches, lambda b: scorer.izif_loss(self._training_tiles(b, device))[0]
            )
            return {"izif_loss": losses}

        def validate() -> dict[str, float]:
            encoder.eval()
            with torch.inference_mode():
                losses = [
                    scorer.izif_loss(to_tiles(to_gan_range(b.to(device), self.channels), self.gan_size))[0]
                    for b in good_val.float().div(255).split(self.batch_size)
                ]
            return {"val_loss": float(torch.cat(losses).mean())}

        loop = EpochLoop(
            self.encoder_epochs,
            self.encoder_patience,
            _phase(context, "encoder", optional=True),
            desc="encoder",
        )
        self.encoder_history_ = loop.run(
            train_epoch,
            {"encoder": encoder, "optimizer": optimizer},
            best_of=encoder,
            validate=validate,
            monitor="val_loss",
        )
        encoder.requires_grad_(False)
        return scorer.eval()


__all__ = ["AnoGAN", "DcganDetector", "FAnoGAN", "generate_images", "sample_grid", "to_uint8"]
