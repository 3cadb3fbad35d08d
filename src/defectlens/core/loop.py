"""A plain epoch loop for the models that learn weights (STFPM, autoencoders, GANs): no framework.

The loop owns what every such model needs and nothing else: a progress bar with the losses, early
stopping on a validation value with the best weights kept, a state file after every epoch so an
interrupted run resumes where it stopped, and a history a user can plot.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from defectlens.core.context import FitContext, progress_bar
from defectlens.core.estimator import setting, settings_dataclass
from defectlens.core.settings import NON_NEGATIVE, POSITIVE, POSITIVE_INT, OneOf, Optional, Real
from defectlens.errors import CheckpointError, ConfigError, DataError

logger = logging.getLogger(__name__)

STATE_FILE = "last.pt"
HISTORY_FILE = "history.json"


def cache_images(
    data: DataLoader, progress: bool = False, desc: str = "load"
) -> tuple[torch.Tensor, np.ndarray]:
    """Decode and resize every image once: (N, 3, H, W) uint8 and the (N,) labels, so epochs do not
    re-read files.

    Raises:
        DataError: `data` holds no image.
    """
    images, labels = [], []
    for batch in data if not progress else tqdm(data, desc=desc, unit="batch", leave=False):
        images.append((batch.images * 255).round().to(torch.uint8))
        labels.append(batch.labels)
    if not images:
        raise DataError(f"no images to {desc}")
    return torch.cat(images), torch.cat(labels).numpy()


def shuffled_indices(n: int, batch_size: int, drop_last: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over `n` items in a new random order each call (the last partial batch dropped
    when `drop_last` and n >= batch_size), so images and cached targets can be taken together.

    The order comes from torch's global generator, which `fit` seeds and a resumed loop restores.
    """
    order = torch.randperm(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def shuffled_batches(images: torch.Tensor, batch_size: int, drop_last: bool = True) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] of cached uint8 images, in a new random order each call."""
    for index in shuffled_indices(len(images), batch_size, drop_last):
        yield images[index].float() / 255


FLIPS = ("horizontal", "vertical")


def random_flips(images: torch.Tensor, flips: tuple[str, ...]) -> torch.Tensor:
    """Each image of a (B, C, H, W) batch mirrored along each of `flips` (names in FLIPS) with
    probability 1/2, independently; randomness from torch's global generator, as `shuffled_indices`."""
    for flip in flips:
        chosen = torch.rand(len(images), device=images.device) < 0.5
        mirrored = images.flip(-1 if flip == "horizontal" else -2)
        images = torch.where(chosen[:, None, None, None], mirrored, images)
    return images


def in_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] of cached uint8 images, in order."""
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size].float() / 255


@torch.inference_mode()
def frozen_features(
    network: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    progress: bool = False,
    desc: str = "features",
    transform: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> list[torch.Tensor]:
    """A frozen network's feature maps of cached uint8 images (`cache_images`), computed once for all
    epochs: per layer (N, C_l, h_l, w_l) in float16 on the CPU, after `transform` (e.g. a normalisation)."""
    device = next(network.buffers()).device
    parts = []
    for batch in progress_bar(in_batches(images, batch_size), progress, desc, -(-len(images) // batch_size)):
        features = network(batch.to(device))
        parts.append([f.half().cpu() for f in (transform(features) if transform else features)])
    return [torch.cat(layer) for layer in zip(*parts, strict=True)]


@settings_dataclass
class TrainingSettings:
    """The settings of a model trained by `make_optimizer` and `EpochLoop`, for an estimator to inherit.

    Args:
        optimizer: "adam" or "sgd" (a subclass may offer "rmsprop" too).
        lr: learning rate; `None` means the estimator's default for the optimizer.
        momentum: SGD momentum, or Adam's beta1.
        weight_decay: L2 penalty on the trained weights.
        max_epochs: upper bound on training epochs.
        patience: stop after this many epochs without a better validation value; `None` never stops early.
    """

    optimizer: str = setting("adam", OneOf(("adam", "sgd")))
    lr: float | None = setting(None, Optional(POSITIVE, "the optimizer's default"))
    momentum: float = setting(0.9, Real(0, 1, closed="left"))
    weight_decay: float = setting(0.0, NON_NEGATIVE)
    max_epochs: int = setting(100, POSITIVE_INT)
    patience: int | None = setting(10, Optional(POSITIVE_INT, "no early stopping"))


def descend(
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Any],
    losses_of: Callable[[Any], torch.Tensor],
    reduction: str = "mean",
) -> float:
    """One pass of gradient steps, one per batch on its per-sample losses (B,) reduced by `reduction`
    ("mean", or "sum" where a method's learning rate is tuned for sums); returns the mean per-sample
    loss over the pass."""
    total, count = 0.0, 0
    for batch in batches:
        losses = losses_of(batch)
        optimizer.zero_grad(set_to_none=True)
        (losses.sum() if reduction == "sum" else losses.mean()).backward()
        optimizer.step()
        total += float(losses.detach().sum())
        count += len(losses)
    return total / max(count, 1)


def make_optimizer(
    name: str, parameters: Any, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """ "sgd" (with `momentum`), "rmsprop" (without momentum) or "adam" (`momentum` as its first beta)."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ConfigError(f"optimizer must be 'sgd', 'rmsprop' or 'adam', got {name!r}")


@dataclass
class EpochLoop:
    """Runs `train_epoch` up to `max_epochs` times with early stopping, best weights and resume.

    Args:
        max_epochs: upper bound on epochs.
        patience: stop after this many epochs without a better `monitor` value; `None` never stops early.
        context: device, progress, work_dir (state file and history) and resume flag of the fit.
        desc: label of the progress bar.
    """

    max_epochs: int
    patience: int | None
    context: FitContext
    desc: str = "train"

    def run(
        self,
        train_epoch: Callable[[int], dict[str, float]],
        state: Mapping[str, Any],
        best_of: nn.Module | None = None,
        validate: Callable[[], dict[str, float]] | None = None,
        monitor: str | None = None,
        on_epoch_end: Callable[[int], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train; afterwards `best_of` holds the weights of the epoch with the lowest `monitor` value.

        Args:
            train_epoch: one pass over the training data for epoch `i` (0-based); returns mean losses.
            state: every object whose `state_dict` must survive an interruption (modules, optimizers).
            best_of: the module whose best weights are kept; `None` keeps the last ones.
            validate: returns validation values after each epoch, e.g. {"val_loss": 0.1}.
            monitor: key of `validate`'s result to minimise for early stopping and the best weights.
            on_epoch_end: called after each epoch (e.g. to save a sample grid).

        Returns:
            One dict per epoch: epoch, seconds, the training losses and the validation values.
        """
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be >= 1 or None, got {self.patience}")
        if monitor is not None and validate is None:
            raise ConfigError(f"monitor '{monitor}' needs a validate function")
        progress = {"history": [], "best_value": float("inf"), "best_state": None, "bad_epochs": 0}
        start_epoch = 0
        if self.context.resume:
            start_epoch = self._restore(state, progress)
        bar = tqdm(
            range(start_epoch, self.max_epochs),
            desc=self.desc,
            unit="epoch",
            initial=start_epoch,
            total=self.max_epochs,
            disable=not self.context.progress,
        )
        for epoch in bar:
            started = time.perf_counter()
            record: dict[str, float] = {"epoch": epoch + 1, **train_epoch(epoch)}
            if validate is not None:
                record.update(validate())
            record["seconds"] = round(time.perf_counter() - started, 3)
            progress["history"].append(record)
            stop = False
            if monitor is not None:
                if monitor not in record:
                    raise ConfigError(f"validate() returned no '{monitor}' value; it gave {sorted(record)}")
                if record[monitor] < progress["best_value"]:
                    progress["best_value"], progress["bad_epochs"] = record[monitor], 0
                    if best_of is not None:
                        progress["best_state"] = copy.deepcopy(best_of.state_dict())
                else:
                    progress["bad_epochs"] += 1
                    stop = self.patience is not None and progress["bad_epochs"] >= self.patience
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds")})
            logger.info("epoch %s", json.dumps(record))
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            self._save(state, progress, epoch + 1)
            if stop:
                logger.info(
                    "early stop at epoch %d: %s not better for %d epochs", epoch + 1, monitor, self.patience
                )
                break
        if best_of is not None and progress["best_state"] is not None:
            best_of.load_state_dict(progress["best_state"])
        return progress["history"]

    def _save(self, state: Mapping[str, Any], progress: dict[str, Any], epochs_done: int) -> None:
        work_dir = self.context.work_dir
        if work_dir is None:
            return
        work_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "epochs_done": epochs_done,
            "state": {name: obj.state_dict() for name, obj in state.items()},
            "progress": progress,
            "rng": torch.get_rng_state(),
        }
        temporary = work_dir / (STATE_FILE + ".tmp")
        torch.save(payload, temporary)
        temporary.replace(work_dir / STATE_FILE)  # atomic: an interruption never leaves half a file
        (work_dir / HISTORY_FILE).write_text(json.dumps(progress["history"], indent=1) + "\n")

    def _restore(self, state: Mapping[str, Any], progress: dict[str, Any]) -> int:
        path = Path(self.context.work_dir or ".") / STATE_FILE
        if not path.is_file():
            raise CheckpointError(f"cannot resume: no training state at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            for name, obj in state.items():
                obj.load_state_dict(payload["state"][name])
        except Exception as error:  # a corrupt or foreign file fails in many ways inside torch
            raise CheckpointError(f"cannot resume from {path}: {error}") from error
        progress.update(payload["progress"])
        torch.set_rng_state(payload["rng"])
        logger.info("resuming after epoch %d from %s", payload["epochs_done"], path)
        return int(payload["epochs_done"])
