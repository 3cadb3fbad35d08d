"""The copy check flags a "GAN" that returns its training images and passes one that makes new images."""

from __future__ import annotations

import json

import pytest

from defectlens.augment.check import check_run
from defectlens.augment.images import load_image_set
from defectlens.augment.runs import train_run

from .conftest import write_class

SETTINGS = {"image_size": 64, "width": 8, "max_epochs": 1, "batch_size": 8, "device": "cpu"}


@pytest.fixture(scope="module")
def run(tiny_class, tmp_path_factory):
    out = tmp_path_factory.mktemp("check") / "run"
    train_run(tiny_class, out, SETTINGS)
    return out


def fake_gan(monkeypatch, images):
    """Make `generate_images` return `images`, whatever generator and seed it is given."""
    monkeypatch.setattr(
        "defectlens.models.gan.detector.generate_images", lambda generator, n, seed=0: images[:n]
    )


def test_verbatim_copies_are_flagged_in_both_spaces(run, tiny_class, tmp_path, monkeypatch, embedder):
    training = load_image_set(tiny_class, 64).images
    fake_gan(monkeypatch, training)
    report = check_run(run, out=tmp_path / "r", embedder=embedder)
    assert report["flagged"] and report["n_generated"] == len(training)
    for space in ("pixel", "feature"):
        stats = report["copy"][space]
        assert stats["close_fraction"] == 1.0 and stats["exact_copies"] == len(training) and stats["flagged"]
    assert report["quality"]["frechet_feature_distance"] == pytest.approx(0.0, abs=1e-3)
    assert json.loads((tmp_path / "r" / "report.json").read_text())["flagged"] is True
    assert "COPYING FLAGGED" in (tmp_path / "r" / "report.md").read_text()


def test_new_images_of_the_class_are_not_flagged(run, tmp_path, monkeypatch, embedder):
    fresh = load_image_set(write_class(tmp_path / "fresh", range(1000, 1024)), 64).images  # same texture law
    fake_gan(monkeypatch, fresh)
    report = check_run(run, out=tmp_path / "r", embedder=embedder)
    assert not report["flagged"], report["copy"]
    for space in ("pixel", "feature"):
        assert report["copy"][space]["close_fraction"] <= 0.25 and report["copy"][space]["exact_copies"] == 0
