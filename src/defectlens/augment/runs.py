"""GAN augmentation runs: train the DCGAN on one defect class, save it, reload it, generate images.

A run folder holds `gan.pt`, one plain-dict checkpoint (format_version, defectlens_version, kind
"dcgan-augment", the DCGAN settings, generator and discriminator state dicts, training history, the
training data and image count, the image mode), and `training/` (`samples/epoch_NNN.png` fixed-noise
grids after every epoch, `gan/` the state `--resume` continues from).

The DCGAN is the AnoGAN detector's (`DcganDetector`): spectral-norm discriminator by default, the NEU
augmentation configuration (Adam, G 1e-4, D 4e-4, betas (0.5, 0.999)). It is used here for its settings
and its `train_gan` only; no anomaly scorer is built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectlens import __version__
from defectlens.augment.images import load_image_set
from defectlens.core.checkpoint import FORMAT_VERSION, read_checkpoint
from defectlens.errors import CheckpointError, ConfigError
from defectlens.models.gan.detector import DcganDetector, generate_images, sample_grid
from defectlens.models.gan.torch_model import Discriminator, Generator

logger = logging.getLogger(__name__)

KIND = "dcgan-augment"
CHECKPOINT = "gan.pt"
TRAINING_DIR = "training"
OVERVIEW_DIR = "overview"  # a subfolder, so the generated folder itself holds only generated images
# DCGAN settings a run accepts; the detector's scoring settings (patch_size, blur_sigma, ...) do not apply.
NOT_SETTINGS = ("patch_size", "blur_sigma", "threshold_quantile")
SETTINGS = tuple(name for name in DcganDetector.param_names() if name not in NOT_SETTINGS)
DEFAULTS = {"image_size": 64, "width": 64, "max_epochs": 100, "batch_size": 16}
SHEET_IMAGES = 64


@dataclass
class AugmentRun:
    """A loaded run: the networks (eval mode, CPU) and what the checkpoint records."""

    path: Path
    settings: dict[str, Any]
    generator: Generator
    discriminator: Discriminator
    mode: str
    data: str | list[str]
    n_images: int
    history: list[dict[str, float]]
    train_seconds: float

    @property
    def image_size(self) -> int:
        return int(self.settings["image_size"])

    @property
    def channels(self) -> int:
        return int(self.settings["channels"])


def dcgan(settings: dict[str, Any]) -> DcganDetector:
    """The settings holder of the DCGAN (an AnoGAN detector, whose `train_gan` trains only the GAN).

    Raises:
        ConfigError: a setting that is not a DCGAN setting (the message lists the valid ones).
    """
    from defectlens.models import create

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"GAN augmentation has no setting {unknown}; its settings are {sorted(SETTINGS)}")
    return create("anogan", **{**DEFAULTS, **settings})


def train_run(
    data: str | Path | Sequence[str | Path],
    out: str | Path,
    settings: dict[str, Any] | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the DCGAN on every image of `data` (one defect class) and write a run folder.

    Images of any size and mode are resized to `image_size` squared (squash, area interpolation); the GAN
    works in grey when every image is grey, unless `settings["channels"]` says otherwise.

    Args:
        data: a folder of images or a list of image files.
        out: run folder; an existing non-empty one needs `force` (or `resume`).
        settings: DCGAN settings (see `SETTINGS`); missing ones take `DEFAULTS`, then the detector's.
        force: replace an existing run folder.
        resume: continue an interrupted training in `out`.
        progress: show progress bars.

    Returns:
        A summary: out, mode, n_images, epochs, train_seconds, the last epoch's losses.

    Raises:
        DataError: empty folder or unreadable image. ConfigError: bad setting, or `out` exists.
        CheckpointError: `resume` without training state in `out`.
    """
    from defectlens.core.loop import STATE_FILE
    from defectlens.engine.runs import prepare_output

    settings = dict(settings or {})
    dcgan(settings).check_params()  # fail on a bad setting before reading any image
    images = load_image_set(data, {**DEFAULTS, **settings}["image_size"], settings.get("channels"), progress)
    detector = dcgan({**settings, "channels": images.channels})
    out = Path(out)
    state = out / TRAINING_DIR / "gan" / STATE_FILE
    if resume and not state.is_file():
        raise CheckpointError(f"cannot resume: no training state at {state}")
    if not resume:
        prepare_output(out, force, "run folder")
    start = time.perf_counter()
    generator, discriminator = detector.train_gan(
        list(images.images), progress=progress, work_dir=out / TRAINING_DIR, resume=resume
    )
    seconds = time.perf_counter() - start
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "defectlens_version": __version__,
        "kind": KIND,
        "settings": {name: getattr(detector, name) for name in SETTINGS},
        "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "discriminator": {k: v.detach().cpu() for k, v in discriminator.state_dict().items()},
        "history": detector.history_,
        "data": str(Path(data).resolve())
        if isinstance(data, str | Path)
        else [str(Path(p).resolve()) for p in data],
        "n_images": len(images.paths),
        "mode": images.mode,
        "train_seconds": round(seconds, 2),
    }
    torch.save(checkpoint, out / CHECKPOINT)
    logger.info("trained the GAN on %d images in %.1f s -> %s", len(images.paths), seconds, out)
    return {
        "out": str(out),
        "mode": images.mode,
        "n_images": len(images.paths),
        "epochs": len(detector.history_),
        "train_seconds": round(seconds, 2),
        "last_epoch": detector.history_[-1] if detector.history_ else {},
    }


def _not_a_run(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a GAN augmentation run ({why}); train one with `defectlens augment train`"
    )


def load_run(run: str | Path) -> AugmentRun:
    """Load a run folder written by `train_run` (or its `gan.pt` directly).

    Raises:
        CheckpointError: missing, unreadable, or another kind of file or run (e.g. a detector run).
    """
    run = Path(run)
    path = run / CHECKPOINT if run.is_dir() else run
    if not path.is_file():
        raise _not_a_run(run, f"no {CHECKPOINT} in it" if run.is_dir() else "it does not exist")
    try:
        checkpoint = read_checkpoint(path, KIND)
    except CheckpointError as error:
        raise _not_a_run(path, str(error)) from error
    settings = {**checkpoint["settings"], "device": "cpu"}
    generator, discriminator = dcgan(settings).plain_networks()
    generator.load_state_dict(checkpoint["generator"])
    discriminator.load_state_dict(checkpoint["discriminator"])
    return AugmentRun(
        path=path.parent,
        settings=checkpoint["settings"],
        generator=generator.eval(),
        discriminator=discriminator.eval(),
        mode=checkpoint["mode"],
        data=checkpoint["data"],
        n_images=checkpoint["n_images"],
        history=checkpoint["history"],
        train_seconds=checkpoint["train_seconds"],
    )


def contact_sheet(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """uint8 images (N, S, S) or (N, S, S, 3) -> one uint8 picture, `columns` per row, 2 px apart."""
    tensor = torch.from_numpy(images).float() / 127.5 - 1
    tensor = tensor[:, None] if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    return sample_grid(tensor, columns)


def generate_run(
    run: str | Path, n: int, out: str | Path, seed: int = 0, force: bool = False, progress: bool = False
) -> list[Path]:
    """Write `n` generated images as PNG (mode 'L' or 'RGB', as the training images) to `out`, and a
    contact sheet of the first 64 to `out/overview/contact_sheet.png`. The same `seed` gives the same
    images (on the CPU, where generation runs).

    Returns:
        The image files, `gen_<seed>_<index>.png`.

    Raises:
        ConfigError: `n` < 1, or `out` exists and is not empty without `force`.
        CheckpointError: `run` is not a GAN augmentation run.
    """
    from tqdm.auto import tqdm

    from defectlens.engine.runs import prepare_output
    from defectlens.reports.figures import save_image

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"the number of images to generate (-n) must be a positive integer, got {n!r}")
    loaded = load_run(run)
    out = prepare_output(Path(out), force, "output folder")
    images = generate_images(loaded.generator, n, seed)
    digits = len(str(n - 1))
    paths = [
        save_image(image, out / f"gen_{seed}_{i:0{digits}d}.png")
        for i, image in enumerate(tqdm(images, desc="write", unit="image", leave=False, disable=not progress))
    ]
    save_image(contact_sheet(images[:SHEET_IMAGES]), out / OVERVIEW_DIR / "contact_sheet.png")
    return paths


__all__ = ["AugmentRun", "contact_sheet", "generate_run", "load_run", "train_run"]
