"""`defectlens audio train|test|predict` end to end on tiny generated clips, and the error paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defectlens.cli import app

from .conftest import TINY_MODELS

runner = CliRunner()


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def settings(model: str) -> list[str]:
    params = {k: v for k, v in TINY_MODELS[model].items() if k != "device"}
    return [arg for key, value in params.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module", params=["aegan-ad", "dcase-baseline-ae"])
def run_dir(request, tiny_dcase, tmp_path_factory) -> Path:
    model = request.param
    out = tmp_path_factory.mktemp("audio_runs") / model
    args = ["audio", "train", "-m", model, "--data", str(tiny_dcase), "--out", str(out), "--device", "cpu"]
    result = runner.invoke(app, [*args, *settings(model)])
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_checkpoint_config_and_cache(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert (run_dir / "model.pt").is_file() and config["model"] == run_dir.name
    assert config["data"]["n_train"] == 6 and config["data"]["sections"] == ["id_00"]
    assert config["features"]["n_mels"] == 16 and len(config["history"]) == config["params"]["max_epochs"]
    assert len(list((run_dir / "features").rglob("*.npy"))) == 6


def test_test_writes_metrics_scores_and_pictures(run_dir):
    result = runner.invoke(app, ["audio", "test", "--run", str(run_dir), "--pictures", "2"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_clips"] == 6 and metrics["n_anomalous"] == 3
    selected = metrics["scores"][metrics["selected_score"]]
    assert 0 <= selected["sections"]["id_00"]["auc"] <= 1 and "hmean" in selected
    assert "mean AUC" in said(result) and metrics["selected_score"] in said(result)
    with (run_dir / "scores.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and set(metrics["scores"]) <= set(rows[0])
    report = run_dir / "report"
    assert (report / "histogram.png").stat().st_size > 0
    assert len(list((report / "clips").glob("*.png"))) == 2


def test_test_again_needs_force(run_dir):
    result = runner.invoke(app, ["audio", "test", "--run", str(run_dir), "--no-report"])
    if not (run_dir / "metrics.json").exists():  # ran alone: the first test writes metrics.json
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["audio", "test", "--run", str(run_dir), "--no-report"])
    assert result.exit_code == 1 and "--force" in said(result)
    result = runner.invoke(app, ["audio", "test", "--run", str(run_dir), "--no-report", "--force"])
    assert result.exit_code == 0, result.output


def test_predict_scores_files_and_folders(run_dir, tiny_dcase, tmp_path):
    test = tiny_dcase / "fan" / "test"
    out = tmp_path / "preds"
    args = [
        "audio",
        "predict",
        "--run",
        str(run_dir),
        str(test),
        str(next(test.glob("*.wav"))),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, [*args, "--pictures", "1"])
    assert result.exit_code == 0, result.output
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and rows[0]["anomalous"] in ("True", "False")
    assert len(list((out / "clips").glob("*.png"))) == 1
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in said(again) and "--force" in said(again)


def test_train_refuses_to_overwrite_and_rejects_bad_input(run_dir, tiny_dcase, tmp_path):
    base = ["audio", "train", "-m", "dcase-baseline-ae", "--device", "cpu"]
    result = runner.invoke(app, [*base, "--data", str(tiny_dcase), "--out", str(run_dir)])
    assert result.exit_code == 1 and "already exists" in said(result) and "--force" in said(result)
    result = runner.invoke(app, [*base, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "audio data folder not found" in said(result)
    result = runner.invoke(
        app, ["audio", "train", "-m", "nope", "--data", str(tiny_dcase), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and "available audio models: aegan-ad, dcase-baseline-ae" in said(result)
    result = runner.invoke(app, ["audio", "test", "--run", str(tmp_path)])
    assert result.exit_code == 1 and "not an audio run folder" in said(result)


def test_models_lists_settings():
    result = runner.invoke(app, ["audio", "models"])
    assert result.exit_code == 0 and "aegan-ad" in said(result) and "patch_hop = 1" in said(result)
