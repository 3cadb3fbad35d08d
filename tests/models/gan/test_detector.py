"""AnoGAN and f-AnoGAN detectors: settings, training state, generation, patches and the scorer swap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defectlens.data import load_mvtec
from defectlens.errors import ConfigError
from defectlens.models import create
from defectlens.models.gan import AnoGAN

TINY = {"image_size": 64, "batch_size": 4, "device": "cpu", "width": 8, "max_epochs": 2}


@pytest.fixture(scope="module")
def splits(tiny_mvtec):
    return load_mvtec(tiny_mvtec, val_fraction=0.25)


@pytest.mark.parametrize("name", ["anogan", "fanogan"])
@pytest.mark.parametrize(
    "setting, message",
    [
        ({"image_size": 96}, "image_size must be one of \\(64, 128, 256\\)"),
        ({"image_size": 128, "patch_size": 48}, "patch_size must be one of"),
        ({"image_size": 192, "patch_size": 128}, "divide image_size 192"),
        ({"latent_dim": 0}, "latent_dim must be a positive integer, got 0"),
        ({"channels": 2}, "channels must be one of \\[1, 3\\], got 2"),
        ({"betas": (0.5,)}, "betas must be a list of 2 values, each a number in \\[0, 1\\), got \\(0.5,\\)"),
    ],
)
def test_bad_settings_are_named(name, setting, message, splits):
    with pytest.raises(ConfigError, match=message):
        create(name, **{**TINY, **setting}).fit(splits)


def test_bad_search_settings_are_named(splits):
    with pytest.raises(ConfigError, match="lam must be a number in \\[0, 1\\], got 1.5"):
        create("anogan", **TINY, lam=1.5).fit(splits)
    with pytest.raises(ConfigError, match="search_steps must be an integer >= 0"):
        create("anogan", **TINY, search_steps=-1).fit(splits)


def test_training_writes_samples_history_and_resumes(splits, tmp_path):
    detector = create("fanogan", **TINY, encoder_epochs=2).fit(splits, work_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    history = json.loads((tmp_path / "gan" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(history[0])
    assert (tmp_path / "encoder" / "history.json").is_file()
    longer = create("fanogan", **{**TINY, "max_epochs": 3}, encoder_epochs=3)
    longer.fit(splits, work_dir=tmp_path, resume=True)
    assert [h["epoch"] for h in longer.history_] == [1, 2, 3]
    assert history[:2] == json.loads((tmp_path / "gan" / "history.json").read_text())[:2]
    assert len(longer.encoder_history_) == 3
    assert detector.history_[:2] == longer.history_[:2]


def test_generate_is_reproducible_and_in_the_models_mode(splits):
    grey = create("anogan", **TINY, channels=1).fit(splits)
    images = grey.generate(5, seed=3)
    assert images.shape == (5, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, grey.generate(5, seed=3))
    assert not np.array_equal(images, grey.generate(5, seed=4))
    with pytest.raises(ConfigError, match="positive integer, got 0"):
        grey.generate(0)


def test_patches_train_and_score_a_larger_image(splits):
    detector = create("fanogan", **{**TINY, "image_size": 128}, patch_size=64, encoder_epochs=1).fit(splits)
    prediction = detector.predict(splits.test[:3])
    assert prediction.anomaly_map.shape == (3, 128, 128)


def test_anogan_searches_the_gan_of_a_trained_fanogan(splits):
    fanogan = create("fanogan", **TINY, encoder_epochs=1).fit(splits)
    anogan = AnoGAN.from_gan(fanogan, splits.val, search_steps=3)
    assert anogan.search_steps == 3 and anogan.width == fanogan.width
    assert anogan.module_.generator is fanogan.module_.generator
    prediction = anogan.predict(splits.test[:2])
    assert prediction.score.shape == (2,) and np.isfinite(prediction.raw_score).all()


def test_anogan_refuses_export_and_names_the_ones_that_can(splits, tmp_path):
    from defectlens.export import export_detector

    detector = create("anogan", **{**TINY, "max_epochs": 1}, search_steps=1).fit(splits)
    with pytest.raises(ConfigError, match="anogan cannot be exported.*'fanogan'"):
        export_detector(detector, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


def test_train_gan_alone_uses_every_image_and_feeds_generate_images(tiny_mvtec, tmp_path):
    from defectlens.models.gan.detector import generate_images

    detector = create("anogan", **TINY, channels=1)
    generator, discriminator = detector.train_gan(tiny_mvtec / "train" / "good", work_dir=tmp_path)
    assert not hasattr(detector, "module_")  # no scorer, no thresholds: not a fitted detector
    assert (tmp_path / "samples" / "epoch_002.png").is_file()
    images = generate_images(generator, 3, seed=1)
    assert images.shape == (3, 64, 64)
    with pytest.raises(ConfigError, match="positive integer, got -2"):
        generate_images(generator, -2)


def test_resume_without_training_state_names_the_folder(splits, tmp_path):
    from defectlens.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no training state at .*gan"):
        create("fanogan", **TINY, encoder_epochs=1).fit(splits, work_dir=tmp_path, resume=True)
