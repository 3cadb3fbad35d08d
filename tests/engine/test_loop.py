"""The shared epoch loop: early stopping, best weights, resume, and its errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from defectlens.core.loop import (
    HISTORY_FILE,
    STATE_FILE,
    EpochLoop,
    in_batches,
    random_flips,
    shuffled_batches,
)
from defectlens.errors import CheckpointError, ConfigError
from defectlens.models.base import FitContext


def scripted(values):
    """A validate function returning the given val_loss values in turn, and a module to keep."""
    module = nn.Linear(1, 1, bias=False)
    epochs = iter(values)

    def train_epoch(epoch: int) -> dict[str, float]:
        module.weight.data.fill_(float(epoch + 1))  # weight = epoch number, so we can see which was kept
        return {"loss": 1.0 / (epoch + 1)}

    return module, train_epoch, lambda: {"val_loss": next(epochs)}


def test_early_stopping_keeps_the_best_epoch():
    module, train_epoch, validate = scripted([5.0, 3.0, 4.0, 4.0, 1.0])
    loop = EpochLoop(max_epochs=5, patience=2, context=FitContext(torch.device("cpu")))
    history = loop.run(train_epoch, {"m": module}, module, validate, "val_loss")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # stopped: epochs 3 and 4 not better than 2
    assert module.weight.item() == 2.0
    assert history[1] | {"seconds": 0} == {"epoch": 2, "loss": 0.5, "val_loss": 3.0, "seconds": 0}


def test_without_monitor_runs_all_epochs_and_keeps_the_last():
    module, train_epoch, _ = scripted([])
    history = EpochLoop(3, None, FitContext(torch.device("cpu"))).run(train_epoch, {"m": module})
    assert len(history) == 3 and module.weight.item() == 3.0


def test_resume_continues_where_it_stopped(tmp_path):
    context = FitContext(torch.device("cpu"), work_dir=tmp_path)
    module, train_epoch, validate = scripted([5.0, 3.0])
    EpochLoop(2, 10, context).run(train_epoch, {"m": module}, module, validate, "val_loss")
    assert (tmp_path / STATE_FILE).is_file()
    assert len(json.loads((tmp_path / HISTORY_FILE).read_text())) == 2

    resumed, train_epoch, validate = scripted([4.0, 2.0])  # what epochs 3 and 4 report
    seen = []
    history = EpochLoop(4, 10, FitContext(torch.device("cpu"), work_dir=tmp_path, resume=True)).run(
        lambda e: seen.append(e) or train_epoch(e), {"m": resumed}, resumed, validate, "val_loss"
    )
    assert seen == [2, 3]
    assert [h["val_loss"] for h in history] == [5.0, 3.0, 4.0, 2.0]
    assert resumed.weight.item() == 4.0  # best is epoch 4


def test_resume_without_state_and_bad_settings(tmp_path):
    module, train_epoch, validate = scripted([1.0])
    context = FitContext(torch.device("cpu"), work_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="no training state at"):
        EpochLoop(2, 1, context).run(train_epoch, {"m": module})
    (tmp_path / STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot resume from"):
        EpochLoop(2, 1, context).run(train_epoch, {"m": module})
    cpu = FitContext(torch.device("cpu"))
    with pytest.raises(ConfigError, match="max_epochs must be >= 1, got 0"):
        EpochLoop(0, 1, cpu).run(train_epoch, {"m": module})
    with pytest.raises(ConfigError, match="patience must be >= 1 or None, got 0"):
        EpochLoop(1, 0, cpu).run(train_epoch, {"m": module})
    with pytest.raises(ConfigError, match="validate\\(\\) returned no 'auroc'"):
        EpochLoop(1, 1, cpu).run(train_epoch, {"m": module}, module, validate, "auroc")


def test_batches_cover_every_image_once():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    torch.manual_seed(0)
    shuffled = torch.cat([b[:, 0, 0, 0] for b in shuffled_batches(images, 4, drop_last=False)])
    assert sorted((shuffled * 255).round().tolist()) == list(range(10))
    assert [len(b) for b in shuffled_batches(images, 4)] == [4, 4]  # drop_last
    ordered = torch.cat([b[:, 0, 0, 0] for b in in_batches(images, 3)])
    assert (ordered * 255).round().tolist() == list(range(10))


def test_make_optimizer_builds_each_kind_and_names_a_bad_one():
    from defectlens.core.loop import make_optimizer

    params = [nn.Parameter(torch.zeros(2))]
    adam = make_optimizer("adam", params, 1e-3, 0.5, 1e-4)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.5, 0.999)
    assert isinstance(make_optimizer("rmsprop", params, 1e-3, 0.9, 0.0), torch.optim.RMSprop)
    sgd = make_optimizer("sgd", params, 0.4, 0.9, 1e-4)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4
    with pytest.raises(ConfigError, match="optimizer must be 'sgd', 'rmsprop' or 'adam', got 'lbfgs'"):
        make_optimizer("lbfgs", params, 1.0, 0.0, 0.0)


def test_random_flips_mirror_each_image_or_leave_it():
    images = torch.arange(64 * 2 * 3, dtype=torch.float32).view(64, 1, 2, 3)
    torch.manual_seed(0)
    flipped = random_flips(images, ("horizontal", "vertical"))
    variants = [images, images.flip(-1), images.flip(-2), images.flip(-1).flip(-2)]
    seen = [next(k for k, v in enumerate(variants) if torch.equal(flipped[i], v[i])) for i in range(64)]
    assert set(seen) == {0, 1, 2, 3}  # 64 images: every combination occurs (each has probability 1/4)
    torch.manual_seed(0)
    assert torch.equal(random_flips(images, ("horizontal", "vertical")), flipped)  # seeded: reproducible
    only_horizontal = random_flips(images, ("horizontal",))
    pairs = zip(only_horizontal, images, strict=True)
    assert all(torch.equal(f, x) or torch.equal(f, x.flip(-1)) for f, x in pairs)
    assert torch.equal(random_flips(images, ()), images)
