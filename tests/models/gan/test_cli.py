"""Both GAN scorers end to end from the command line, with their training pictures and resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from defectlens.cli import app

runner = CliRunner()
GAN = ["--image-size", "64", "--device", "cpu", "--set", "width=8", "--set", "max_epochs=2"]


@pytest.mark.parametrize(
    "model, extra", [("anogan", ["--set", "search_steps=3"]), ("fanogan", ["--set", "encoder_epochs=2"])]
)
def test_train_test_predict(model, extra, tiny_mvtec, tmp_path):
    run = tmp_path / model
    result = runner.invoke(
        app, ["train", "-m", model, "--data", str(tiny_mvtec), "--out", str(run), *GAN, *extra]
    )
    assert result.exit_code == 0, result.output
    assert (run / "training" / "samples" / "epoch_002.png").is_file()
    result = runner.invoke(app, ["test", "--run", str(run), "--no-report"])
    assert result.exit_code == 0, result.output
    assert 0.0 <= json.loads((run / "metrics.json").read_text())["image_auroc"] <= 1.0
    image = next((tiny_mvtec / "test" / "scratch").iterdir())
    result = runner.invoke(app, ["predict", "--run", str(run), str(image), "--out", str(tmp_path / "preds")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "preds" / "predictions.jsonl").read_text().splitlines()) == 1


def test_unsupported_size_and_export_of_anogan_are_clear(tiny_mvtec, tmp_path):
    args = ["train", "-m", "anogan", "--data", str(tiny_mvtec), "--out", str(tmp_path / "a"), *GAN]
    result = runner.invoke(app, [*args, "--image-size", "96"])
    assert result.exit_code == 1 and "image_size must be one of (64, 128, 256)" in result.output
    result = runner.invoke(app, [*args, "--set", "latent_dim=0"])
    assert result.exit_code == 1 and "latent_dim must be a positive integer, got 0" in result.output
    result = runner.invoke(app, [*args, "--set", "search_steps=1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", "--run", str(tmp_path / "a"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "anogan cannot be exported" in result.output
