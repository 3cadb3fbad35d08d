"""STFPM training: the student learns, early stopping keeps the best epoch, resume continues, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlens.data import load_mvtec
from defectlens.errors import ConfigError
from defectlens.models import create
from defectlens.models.stfpm import Stfpm

TINY = {"image_size": 64, "batch_size": 4, "device": "cpu"}


@pytest.fixture(scope="module")
def splits(tiny_mvtec):
    return load_mvtec(tiny_mvtec, val_fraction=0.25)


PAPER = Stfpm.preset_settings("paper")  # SGD at lr 0.4, layers 1-3, product of the maps


def test_student_learns(splits):
    detector = Stfpm(**PAPER, max_epochs=5, patience=None, **TINY).fit(splits)
    losses = [h["loss"] for h in detector.history_]
    val_losses = [h["val_loss"] for h in detector.history_]
    assert len(losses) == 5
    assert losses[-1] < 0.5 * losses[0] and val_losses[-1] < 0.75 * val_losses[0]
    assert not any(p.requires_grad for p in detector.module_.teacher.parameters())
    assert not detector.module_.training and not detector.module_.student.training


def test_the_defaults_adam_and_sum_map_also_learn(splits):
    detector = Stfpm(max_epochs=3, patience=None, **TINY)
    assert (detector.optimizer, detector.map_combination) == ("adam", "sum")
    losses = [h["loss"] for h in detector.fit(splits).history_]
    assert losses[-1] < losses[0]


def test_flipped_training_images_also_learn(splits):
    detector = Stfpm(flips=("horizontal", "vertical"), max_epochs=3, patience=None, **TINY)
    losses = [h["loss"] for h in detector.fit(splits).history_]
    assert losses[-1] < losses[0]


def test_early_stopping_stops_and_keeps_the_best_weights(splits):
    # A learning rate this large makes the validation loss jump around: the loop must stop after
    # `patience` epochs without improvement and restore the student of the best epoch.
    settings = {**PAPER, "lr": 5.0, "blur_sigma": 0.0}
    detector = Stfpm(**settings, max_epochs=30, patience=2, **TINY).fit(splits)
    history = detector.history_
    val_losses = [h["val_loss"] for h in history]
    best = int(np.argmin(val_losses))
    assert len(history) == best + 1 + 2 < 30
    # The kept student reproduces the best validation loss.
    module = detector.module_
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.models.stfpm.torch_model import normalize, stfpm_loss

    images = torch.cat([b.images for b in loader(as_dataset(splits.val, detector.input_resize), 4)])
    with torch.inference_mode():
        loss = stfpm_loss(normalize(module.teacher(images)), normalize(module.student(images))).mean()
    assert float(loss) == pytest.approx(val_losses[best], rel=1e-2)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("optimizer", "rmsprop"),
        ("lr", 0.0),
        ("momentum", 1.0),
        ("weight_decay", -1.0),
        ("max_epochs", 0),
        ("patience", 0),
        ("map_combination", "mean"),
        ("blur_sigma", -1.0),
        ("layers", ()),
        ("flips", ("diagonal",)),
    ],
)
def test_bad_setting_names_itself(setting, value, splits):
    with pytest.raises(ConfigError, match=f"{setting} must"):
        create("stfpm", **{setting: value}, **TINY).fit(splits)


def test_layer_out_of_range_names_the_setting(splits):
    with pytest.raises(ConfigError, match="layers must be increasing indices"):
        Stfpm(layers=(1, 9), **TINY).fit(splits)
