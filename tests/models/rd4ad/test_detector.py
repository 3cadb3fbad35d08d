"""RD4AD training: the student learns, the teacher stays frozen, early stopping keeps the best epoch,
resume continues, bad settings name themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlens.data import load_mvtec
from defectlens.errors import ConfigError
from defectlens.models import create
from defectlens.models.rd4ad import Rd4ad

TINY = {"image_size": 64, "batch_size": 4, "device": "cpu", "calibration_refits": 0}  # one training per fit


@pytest.fixture(scope="module")
def splits(tiny_mvtec):
    return load_mvtec(tiny_mvtec, val_fraction=0.25)


def test_student_learns_and_teacher_stays_frozen(splits):
    fresh = Rd4ad(**TINY)._module(pretrained=True)
    teacher_before = {k: v.clone() for k, v in fresh.teacher.state_dict().items()}
    detector = Rd4ad(max_epochs=5, patience=None, **TINY).fit(splits)
    losses = [h["loss"] for h in detector.history_]
    val_losses = [h["val_loss"] for h in detector.history_]
    assert len(losses) == 5
    assert losses[-1] < 0.5 * losses[0] and val_losses[-1] < 0.75 * val_losses[0]
    module = detector.module_
    assert not any(p.requires_grad for p in module.teacher.parameters())
    teacher_after = module.teacher.state_dict()  # weights and batch-norm statistics alike
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)
    assert not module.training and not module.student.training


def test_sgd_also_learns(splits):
    detector = Rd4ad(optimizer="sgd", momentum=0.9, max_epochs=3, patience=None, **TINY)
    losses = [h["loss"] for h in detector.fit(splits).history_]
    assert losses[-1] < losses[0]


def test_early_stopping_stops_and_keeps_the_best_weights(splits):
    # A learning rate this large makes the validation loss jump around: the loop must stop after
    # `patience` epochs without improvement and restore the student of the best epoch.
    detector = Rd4ad(lr=1.0, max_epochs=30, patience=2, blur_sigma=0.0, **TINY).fit(splits)
    history = detector.history_
    val_losses = [h["val_loss"] for h in history]
    best = int(np.argmin(val_losses))
    assert len(history) == best + 1 + 2 < 30
    # The kept student reproduces the best validation loss.
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.models.rd4ad.torch_model import rd4ad_loss

    module = detector.module_
    images = torch.cat([b.images for b in loader(as_dataset(splits.val, detector.input_resize), 4)])
    with torch.inference_mode():
        features = module.teacher(images)
        loss = rd4ad_loss(features, module.student(features)).mean()
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
        ("embedding_channels", 1),
        ("blur_sigma", -1.0),
        ("layers", ()),
    ],
)
def test_bad_setting_names_itself(setting, value, splits):
    with pytest.raises(ConfigError, match=f"{setting} must"):
        create("rd4ad", **{setting: value}, **TINY).fit(splits)


def test_layer_out_of_range_names_the_setting(splits):
    with pytest.raises(ConfigError, match="layers must be increasing indices"):
        Rd4ad(layers=(1, 9), **TINY).fit(splits)
