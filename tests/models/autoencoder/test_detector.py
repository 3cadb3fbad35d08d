"""Autoencoder training: it learns with every loss and optimiser, keeps the best epoch, resumes, writes
sample grids, exports its variants, and names bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from defectlens.data import load_mvtec
from defectlens.errors import ConfigError
from defectlens.models import create
from defectlens.models.autoencoder import Autoencoder
from defectlens.models.autoencoder.losses import reconstruction_loss

TINY = {"image_size": 32, "batch_size": 4, "device": "cpu", "depth": 3, "width": 8, "latent_dim": 16}


@pytest.fixture(scope="module")
def splits(tiny_mvtec):
    return load_mvtec(tiny_mvtec, val_fraction=0.25)


@pytest.mark.parametrize("lamp", [False, True])
def test_training_decreases_the_loss(splits, lamp):
    detector = Autoencoder(lamp=lamp, lr=3e-3, max_epochs=6, patience=None, **TINY).fit(splits)
    losses = [h["loss"] for h in detector.history_]
    val_losses = [h["val_loss"] for h in detector.history_]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0] and min(val_losses) < 0.7 * val_losses[0]
    assert not detector.module_.training


@pytest.mark.parametrize(
    ("optimizer", "loss", "params"),
    [
        ("sgd", "l1", {"lr": 0.5}),
        ("rmsprop", "ssim", {"lamp": True}),
        ("adam", "ssim", {"image_score": "topk", "top_k": 0.05, "map_metric": "l1"}),
    ],
)
def test_optimisers_and_losses_learn(splits, optimizer, loss, params):
    detector = Autoencoder(optimizer=optimizer, loss=loss, max_epochs=4, patience=None, **TINY, **params)
    losses = [h["loss"] for h in detector.fit(splits).history_]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    prediction = detector.predict(splits.test)
    assert prediction.anomaly_map.shape == (len(splits.test), 32, 32)


def _val_images(splits):
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.data.transforms import Resize

    return torch.cat([b.images for b in loader(as_dataset(splits.val, Resize(32, "squash")), 4)])


@pytest.mark.parametrize("digit", [1, 5, 7])
def test_plain_l2_does_not_collapse_on_dark_images(mnist, digit):
    # Before the output started at the training mean, one epoch of plain L2 with Adam left these digits'
    # reconstructions black for good: validation MSE equal to that of an all-black image (docs/lamp.md).
    from defectlens.data.mnist import load_mnist

    images, labels = load_mnist(mnist, "train")
    padded = np.pad(images[labels == digit][:1024], ((0, 0), (2, 2), (2, 2)))
    black_mse = float(((padded / 255.0) ** 2).mean())
    detector = Autoencoder(
        max_epochs=1,
        patience=None,
        channels=1,
        depth=3,
        width=16,
        latent_dim=32,
        image_size=32,
        batch_size=32,
        seed=0,
        device="cpu",
    ).fit(list(np.repeat(padded[..., None], 3, axis=3)))
    assert detector.history_[-1]["val_loss"] < 0.6 * black_mse


def test_grey_model_detects_the_scratches(splits):
    detector = Autoencoder(channels=1, lamp=True, max_epochs=3, **TINY).fit(splits)
    scores = detector.predict(splits.test).raw_score
    labels = np.array([r.label for r in splits.test])
    assert scores[labels == 1].min() > scores[labels == 0].max()
    recon = detector.reconstruct(_val_images(splits))
    assert recon.shape == (len(splits.val), 1, 32, 32)


def test_early_stopping_keeps_the_best_epoch(splits):
    # A huge SGD step makes the validation loss jump: the loop stops after `patience` epochs without
    # improvement, and the kept weights reproduce the best epoch's validation loss.
    detector = Autoencoder(optimizer="sgd", lr=50.0, max_epochs=12, patience=2, **TINY).fit(splits)
    val_losses = [h["val_loss"] for h in detector.history_]
    best = int(np.argmin(val_losses))
    assert len(val_losses) == best + 1 + 2 < 12
    module = detector.module_
    with torch.inference_mode():
        target = module.prepare(_val_images(splits))
        loss = float(reconstruction_loss("l2", False, target, module.reconstruct(target)).mean())
    assert loss == pytest.approx(val_losses[best], rel=1e-4)


def test_resume_continues_and_samples_are_written(splits, tmp_path):
    first = Autoencoder(max_epochs=2, **TINY).fit(splits, work_dir=tmp_path)
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    resumed = Autoencoder(max_epochs=4, **TINY).fit(splits, work_dir=tmp_path, resume=True)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    for before, after in zip(first.history_, resumed.history_[:2], strict=True):
        assert before == after
    straight = Autoencoder(max_epochs=4, **TINY).fit(splits)
    for a, b in zip(straight.history_[2:], resumed.history_[2:], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    from PIL import Image

    grid = Image.open(tmp_path / "samples" / "epoch_004.png")
    n = min(8, len(splits.val))
    assert grid.size == (n * 32 * 3, 3 * 32 * 3)  # 32 px tiles enlarged 3x: input, recon, map rows


def test_labelled_validation_anomalies_switch_monitor_to_auroc(splits):
    val = list(splits.val) + [r for r in splits.test if r.label == 1][:2]
    detector = Autoencoder(max_epochs=2, patience=None, **TINY).fit(splits.train, val=val)
    assert all("val_neg_auroc" in h and -1 <= h["val_neg_auroc"] <= 0 for h in detector.history_)


def test_ssim_grey_topk_variant_exports_to_onnx(splits, tmp_path):
    from defectlens.export import export_detector
    from defectlens.inference import Inferencer

    detector = Autoencoder(channels=1, loss="ssim", lamp=True, image_score="topk", max_epochs=1, **TINY).fit(
        splits
    )
    out = export_detector(detector, tmp_path / "onnx", "onnx")
    exported = Inferencer(out).predict(splits.test, batch_size=3)
    reference = detector.predict(splits.test)
    assert np.abs(exported.score - reference.score).max() < 1e-3
    assert np.abs(exported.anomaly_map - reference.anomaly_map).max() < 1e-3


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("loss", "huber"),
        ("lamp", "yes"),
        ("optimizer", "lbfgs"),
        ("lr", 0.0),
        ("momentum", 1.0),
        ("weight_decay", -1.0),
        ("max_epochs", 0),
        ("patience", 0),
        ("channels", 2),
        ("depth", 0),
        ("width", 0),
        ("latent_dim", 1.5),
        ("map_metric", "psnr"),
        ("blur_sigma", -1.0),
        ("blur_sigma", 10.0),
        ("image_score", "median"),
        ("top_k", 0.0),
        ("top_k", 1.5),
    ],
)
def test_bad_setting_names_itself(setting, value, splits):
    with pytest.raises(ConfigError, match=f"{setting} must"):
        create("autoencoder", **{**TINY, setting: value}).fit(splits)


def test_image_size_must_fit_the_depth(splits):
    with pytest.raises(ConfigError, match="image_size must be divisible by 2 \\*\\* depth = 64"):
        create("autoencoder", **{**TINY, "image_size": 96, "depth": 6}).fit(splits)
