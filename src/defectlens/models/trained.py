"""Calibration for detectors that learn weights (STFPM, autoencoders, GANs) when few good images are held out.

Such a detector holds 10 % of the good images out of training and calibrates on them. For a new part with
75 good images that is 8 scores, and a 1 % threshold extrapolated from 8 scores rejected 16.8 % of MTD's
good test tiles (docs/operating-point.md). When the held-out split is that small, training is also cheap,
so the detector is refitted in k folds of all its good images: each fold's model trains on the others
(monitoring the fold it leaves out, as the shipped model monitors the held-out split) and scores that
fold, and the thresholds are fitted on all of those scores. The shipped model is the one trained on the
split, as before.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.backbones import BackboneSettings
from defectlens.core.context import FitContext, progress_bar
from defectlens.core.estimator import setting
from defectlens.core.loop import STATE_FILE, EpochLoop, TrainingSettings, make_optimizer
from defectlens.core.settings import Integer
from defectlens.data.inputs import as_dataset, loader
from defectlens.errors import ConfigError
from defectlens.metrics import image_auroc
from defectlens.models.base import HELD_OUT_SOURCE, Detector, content_maxima, raw_over

logger = logging.getLogger(__name__)

SMALL_HELD_OUT = 30  # held-out images below which the calibration refits in folds


class TrainedDetector(Detector):
    """A detector that learns weights and calibrates on held-out images, or on refits when they are few.

    Args:
        calibration_refits: folds of the refits when fewer than 30 good images are held out (at least 2;
            0 always keeps the held-out split). The refits cost that many more trainings.
        Other settings: see `Detector`.
    """

    calibration_scores: ClassVar[str] = "held-out or refits"
    calibration_refits: int = setting(5, Integer(0))

    def _check_params(self) -> None:
        super()._check_params()
        if self.calibration_refits == 1:
            raise ConfigError("calibration_refits must be 0 (keep the held-out split) or at least 2, got 1")

    def _calibrate_held_out(
        self, train: Any, val: Any, val_loader: DataLoader, source: str, context: FitContext
    ) -> None:
        if source != HELD_OUT_SOURCE or len(val) >= SMALL_HELD_OUT or self.calibration_refits < 2:
            super()._calibrate_held_out(train, val, val_loader, source, context)
            return
        images = list(train) + list(val)
        shipped = dict(vars(self))  # the refits must not leave their history_ and the like behind
        folds = min(self.calibration_refits, len(images))
        fold_of = np.random.default_rng(self.seed).permutation(len(images)) % folds
        scores, maxima = np.empty(len(images)), np.empty(len(images))
        for fold in progress_bar(range(folds), context.progress, "calibration refits"):
            inside, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
            held_images = [images[i] for i in held]
            work_dir = context.work_dir / f"calibration-fold-{fold}" if context.work_dir else None
            # A resumed fit resumes the refits it had begun and starts the others afresh.
            resume = context.resume and work_dir is not None and (work_dir / STATE_FILE).is_file()
            fold_context = dataclasses.replace(context, work_dir=work_dir, resume=resume)
            inside_images = [images[i] for i in inside]
            module = self._fit_module(
                self._tile_loader(inside_images), self._tile_loader(held_images), fold_context
            )
            module = self._framed(module, self.roi_mask_).eval()
            scores[held], maps, batches = raw_over(
                module, loader(as_dataset(held_images, self.input_resize), self.batch_size)
            )
            maxima[held] = content_maxima(maps, [g for b in batches for g in b.geometries])
        vars(self).clear()
        vars(self).update(shipped)
        labels = np.zeros(len(images), dtype=int)
        self._calibrate_from(
            scores, labels, maxima, None, f"out-of-fold refits ({folds} folds of {len(images)} images)"
        )


class FrozenBackboneDetector(BackboneSettings, TrainingSettings, TrainedDetector):
    """A trained detector built around a frozen pretrained network, whose module holds no state sized by
    the data (STFPM, SimpleNet, RD4AD): `_module(pretrained)` builds it, and training runs through
    `_train_epochs` with the optimizer of `_optimizer`.

    Args:
        resize: "pad" by default (see `Detector`).
        Other settings: see `BackboneSettings`, `TrainingSettings` and `TrainedDetector`.
    """

    # Learning rate per optimizer name when the `lr` setting is None.
    default_lr: ClassVar[dict[str, float]] = {}

    # "pad" keeps the aspect ratio: measured better than squashing on MTD's elongated tiles for all three
    # (docs/stfpm.md, docs/detectors.md).
    resize: str = setting("pad")

    @abstractmethod
    def _module(self, pretrained: bool) -> nn.Module:
        """The module; with `pretrained` False, the architecture alone (for a saved state)."""

    def _shaped_module(self, n_train_images: int) -> nn.Module:
        return self._module(pretrained=False)

    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        return self._module(pretrained=False)

    def _optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        """The `optimizer` setting's optimizer over `parameters` (tensors or parameter groups), at `lr` or
        the class's default for it."""
        lr = self.lr if self.lr is not None else self.default_lr[self.optimizer]
        return make_optimizer(self.optimizer, parameters, lr, self.momentum, self.weight_decay)

    def _train_epochs(
        self,
        train_epoch: Callable[[int], dict[str, float]],
        validate: Callable[[bool], tuple[float, list[torch.Tensor]]],
        labels: np.ndarray,
        state: Mapping[str, Any],
        best_of: nn.Module,
        context: FitContext,
    ) -> None:
        """Train with `EpochLoop` into `history_`, keeping the weights of `best_of`'s best epoch.

        `validate(labelled)` returns the mean loss over the validation images and, when `labelled`, their
        image scores: with labelled anomalies among the validation images (`labels`), early stopping
        monitors the negative image AUROC on them instead of the loss.
        """
        labelled = bool((labels == 1).any() and (labels <= 0).any())

        def values() -> dict[str, float]:
            loss, scores = validate(labelled)
            result = {"val_loss": loss}
            if labelled:
                result["val_neg_auroc"] = -image_auroc((labels == 1).astype(int), torch.cat(scores).numpy())
            return result

        if labelled:
            logger.info("validation images include labelled anomalies: early stopping on image AUROC")
        loop = EpochLoop(self.max_epochs, self.patience, context, desc=self.name)
        monitor = "val_neg_auroc" if labelled else "val_loss"
        self.history_ = loop.run(train_epoch, state, best_of=best_of, validate=values, monitor=monitor)
