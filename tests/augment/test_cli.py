"""`defectlens augment train / generate / check` end to end on tiny textures, and the bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from defectlens.cli import app

runner = CliRunner()
TINY = ["--image-size", "64", "--width", "8", "--epochs", "2", "--batch-size", "8", "--device", "cpu"]


def invoke(args: list[str]):
    """Run the CLI; `.text` is its output with rich's line wrapping undone."""
    result = runner.invoke(app, ["augment", *args])
    result.text = " ".join(result.output.split())
    return result


@pytest.fixture(scope="module")
def run_dir(tiny_class, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("augment") / "gan-scratches"
    result = invoke(["train", "--data", str(tiny_class), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_one_checkpoint_and_the_training_folder(run_dir, tiny_class):
    checkpoint = torch.load(run_dir / "gan.pt", weights_only=True)
    assert checkpoint["kind"] == "dcgan-augment" and checkpoint["format_version"] == 1
    assert checkpoint["n_images"] == 24 and checkpoint["mode"] == "L"
    assert checkpoint["data"] == str(tiny_class.resolve()) and len(checkpoint["history"]) == 2
    assert checkpoint["settings"]["spectral_norm"] is True and checkpoint["settings"]["channels"] == 1
    assert {"generator", "discriminator", "defectlens_version"} <= set(checkpoint)
    assert sorted(p.name for p in (run_dir / "training" / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]


def test_train_refuses_to_overwrite_and_resumes(run_dir, tiny_class):
    args = ["train", "--data", str(tiny_class), "--out", str(run_dir)]
    result = invoke([*args, *TINY])
    assert result.exit_code == 1 and "already exists" in result.text and "--force" in result.text
    more = [*TINY[:4], "--epochs", "3", *TINY[6:]]
    result = invoke([*args, *more, "--resume"])
    assert result.exit_code == 0, result.output
    assert len(torch.load(run_dir / "gan.pt", weights_only=True)["history"]) == 3


def test_generate_is_reproducible_grey_png_with_a_contact_sheet(run_dir, tmp_path):
    for folder in ("a", "b"):
        args = ["generate", "--run", str(run_dir), "-n", "5", "--out", str(tmp_path / folder)]
        result = invoke([*args, "--seed", "3"])
        assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "a").glob("*.png"))
    assert len(files) == 5
    with Image.open(files[0]) as image:
        assert image.mode == "L" and image.size == (64, 64)
    for file in files:
        assert np.array_equal(
            np.asarray(Image.open(file)), np.asarray(Image.open(tmp_path / "b" / file.name))
        )
    assert (tmp_path / "a" / "overview" / "contact_sheet.png").is_file()
    result = invoke(["generate", "--run", str(run_dir), "-n", "5", "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and "--force" in result.text


def test_check_writes_the_report(run_dir, tiny_class, tmp_path):
    out = tmp_path / "report"
    args = ["check", "--run", str(run_dir), "--data", str(tiny_class), "-n", "12", "-k", "3"]
    result = invoke([*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Fréchet feature distance (EfficientNet-Lite0)" in result.text and "verdict" in result.text
    report = json.loads((out / "report.json").read_text())
    assert (
        report["n_generated"] == 12
        and report["n_train"] == 24
        and set(report["copy"]) == {"pixel", "feature"}
    )
    assert np.isfinite(report["quality"]["frechet_feature_distance"]) and "kid_std" in report["quality"]
    for name in (
        "report.md",
        "nearest.csv",
        "samples.png",
        "closest_pairs_pixel.png",
        "distances_feature.png",
    ):
        assert (out / name).stat().st_size > 0
    assert len((out / "nearest.csv").read_text().splitlines()) == 1 + 2 * 12 * 3
    result = invoke(["check", "--run", str(run_dir)])  # default data and out
    assert result.exit_code == 0, result.output
    assert (run_dir / "check" / "report.json").is_file()


def test_mixed_sizes_and_modes_are_resized_and_converted(tmp_path):
    data = tmp_path / "mixed"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i, (shape, mode) in enumerate(
        [((40, 50), "L"), ((70, 70, 3), "RGB"), ((30, 90), "L"), ((64, 64, 3), "RGB")]
    ):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).convert(mode).save(data / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (50, 50), dtype=np.uint8)).convert("P").save(data / "palette.png")
    result = invoke(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY])
    assert result.exit_code == 0, result.output
    assert "(RGB)" in result.text  # colour images present: the GAN works in RGB
    result = invoke(["generate", "--run", str(tmp_path / "run"), "-n", "2", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    with Image.open(next((tmp_path / "g").glob("*.png"))) as image:
        assert image.mode == "RGB" and image.size == (64, 64)


def test_empty_folder_is_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "holds no images" in result.text and "empty" in result.text
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("n", ["0", "-3"])
def test_n_below_one_is_refused(run_dir, tmp_path, n):
    result = invoke(["generate", "--run", str(run_dir), "-n", n, "--out", str(tmp_path / "g")])
    assert result.exit_code == 1 and f"got {n}" in result.text and "positive integer" in result.text
    assert not (tmp_path / "g").exists()


def test_a_run_that_is_not_a_gan_run_is_refused(tmp_path, tiny_class):
    detector_run = tmp_path / "detector"
    detector_run.mkdir()
    torch.save({"format_version": 1, "detector": "padim", "params": {}}, detector_run / "model.pt")
    for target in (detector_run, detector_run / "model.pt", tmp_path / "missing"):
        result = invoke(["generate", "--run", str(target), "-n", "2", "--out", str(tmp_path / "g")])
        assert result.exit_code == 1 and "is not a GAN augmentation run" in result.text, result.output
        assert str(target.name) in result.text
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    result = invoke(["check", "--run", str(tmp_path / "foreign.pt"), "--data", str(tiny_class)])
    assert result.exit_code == 1 and "foreign.pt is not a GAN augmentation run" in result.text


def test_bad_setting_names_the_valid_ones(tiny_class, tmp_path):
    args = ["train", "--data", str(tiny_class), "--out", str(tmp_path / "r"), "--set", "kappa=1"]
    result = invoke(args)
    assert result.exit_code == 1 and "kappa" in result.text and "spectral_norm" in result.text
    result = invoke(["train", "--data", str(tiny_class), "--out", str(tmp_path / "r"), "--image-size", "100"])
    assert result.exit_code == 1 and "image_size" in result.text and "100" in result.text
