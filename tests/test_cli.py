"""The CLI end to end on a tiny generated dataset: train, test, predict, and the error paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from defectlens.cli import app
from defectlens.models import load

runner = CliRunner()
SMALL = ["--image-size", "64", "--device", "cpu", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def run_dir(tiny_mvtec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = runner.invoke(
        app, ["train", "--model", "padim", "--data", str(tiny_mvtec), "--out", str(out), *SMALL]
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_checkpoint_and_run_info(run_dir):
    assert (run_dir / "model.pt").is_file()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["model"] == "padim" and info["params"]["image_size"] == 64
    assert info["data"]["kind"] == "mvtec" and info["n_train"] + info["n_val"] == 16


def test_train_refuses_to_overwrite_without_force(run_dir, tiny_mvtec):
    args = ["train", "-m", "padim", "--data", str(tiny_mvtec), "--out", str(run_dir), *SMALL]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "already exists" in result.output and "--force" in result.output


def test_test_writes_metrics_and_report(run_dir):
    result = runner.invoke(app, ["test", "--run", str(run_dir)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["image_auroc"] == 1.0  # painted scratches on a smooth texture
    assert metrics["pixel_auroc"] > 0.9 and metrics["aupro"] is not None
    assert metrics["n_images"] == 8 and metrics["per_defect_type_auroc"] == {"scratch": 1.0}
    report = run_dir / "report"
    assert (report / "roc.png").stat().st_size > 0 and (report / "histogram.png").stat().st_size > 0
    assert len(list((report / "images").rglob("*.png"))) == 8


def test_test_again_needs_force(run_dir):
    # Runs after test_test_writes_metrics_and_report: metrics.json is there now.
    result = runner.invoke(app, ["test", "--run", str(run_dir), "--no-report"])
    assert result.exit_code == 1 and "metrics.json exists" in result.output and "--force" in result.output
    result = runner.invoke(app, ["test", "--run", str(run_dir), "--no-report", "--force"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
def test_predict_writes_one_line_per_image(run_dir, tiny_mvtec, tmp_path, task):
    out = tmp_path / task
    args = [
        "predict",
        "--run",
        str(run_dir),
        str(tiny_mvtec / "test" / "scratch"),
        "--out",
        str(out),
        "--task",
        task,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for line in lines:
        assert {"path", "score", "label", "raw_score", "task", "overlay"} <= set(line)
        assert line["label"] == "anomalous" and line["score"] >= 0.5
        assert (out / line["overlay"]).is_file()
    if task == "segmentation":
        assert all((out / line["mask"]).is_file() for line in lines)
    if task == "detection":
        for line in lines:
            assert line["boxes"], "a painted scratch must give at least one box"
            x0, y0, x1, y1, score = line["boxes"][0]
            assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 72 and score >= 0.5  # original 96x72 pixels


def test_predict_reports_a_bad_file_in_its_row_and_scores_the_rest(run_dir, tiny_mvtec, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    good = sorted((tiny_mvtec / "test" / "good").iterdir())
    for i, path in enumerate(good * 3):  # 12 images: three model batches of 4 (the run's batch_size)
        shutil.copy(path, folder / f"{i:02d}.png")
    (folder / "05.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", "--run", str(run_dir), str(folder), "--out", str(out)])
    assert result.exit_code == 1 and "1 of 12 images could not be scored" in " ".join(result.output.split())
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [Path(line["path"]).name for line in lines] == [f"{i:02d}.png" for i in range(12)]  # in order
    assert "05.png" in lines[5]["error"] and "score" not in lines[5]
    scored = [line for line in lines if "error" not in line]
    assert len(scored) == 11 and all((out / line["overlay"]).is_file() for line in scored)
    # the same scores as predicting the good files alone
    alone = load(run_dir / "model.pt").predict([line["path"] for line in scored]).score
    assert np.allclose([line["score"] for line in scored], alone, atol=1e-6)


def test_predict_outputs_choose_the_pictures(run_dir, tiny_mvtec, tmp_path):
    images = str(tiny_mvtec / "test" / "scratch")
    for outputs, pictures in [
        ("jsonl", set()),
        ("jsonl,mask", {"masks"}),
        ("overlay,mask", {"overlays", "masks"}),
    ]:
        out = tmp_path / outputs.replace(",", "-")
        result = runner.invoke(
            app, ["predict", "--run", str(run_dir), images, "--out", str(out), "--outputs", outputs]
        )
        assert result.exit_code == 0, result.output
        assert {p.name for p in out.iterdir() if p.is_dir()} == pictures
        lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(lines) == 4 and all(("overlay" in line) == ("overlays" in pictures) for line in lines)
    result = runner.invoke(
        app,
        [
            "predict",
            "--run",
            str(run_dir),
            images,
            "--out",
            str(tmp_path / "x"),
            "--outputs",
            "jsonl,heatmap",
        ],
    )
    assert result.exit_code == 1 and "unknown outputs ['heatmap']" in result.output


def test_predict_bad_task_and_missing_run(run_dir, tiny_mvtec, tmp_path):
    image = str(next((tiny_mvtec / "test" / "good").iterdir()))
    result = runner.invoke(
        app, ["predict", "--run", str(run_dir), image, "--out", str(tmp_path / "p"), "--task", "x"]
    )
    assert result.exit_code == 1 and "task must be one of" in result.output
    result = runner.invoke(
        app, ["predict", "--run", str(tmp_path / "nope"), image, "--out", str(tmp_path / "q")]
    )
    assert result.exit_code == 1 and "nope" in result.output


def test_train_bad_layout_names_the_path(tmp_path):
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "missing" in result.output
    assert not (tmp_path / "r").exists()


def test_train_unknown_model_lists_models(tmp_path, tiny_mvtec):
    result = runner.invoke(
        app, ["train", "-m", "nope", "--data", str(tiny_mvtec), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "available models" in result.output


def test_every_command_has_help_with_an_example():
    for command in (
        "train",
        "test",
        "predict",
        "demo",
        "models",
        "export",
        "info",
        "serve",
        "review",
        "refit",
    ):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "defectlens " + command in result.output.replace("\n", " ")


def test_models_lists_settings():
    result = runner.invoke(app, ["models"])
    assert (
        result.exit_code == 0
        and "coreset_ratio = 0.1" in result.output
        and "n_features = 100" in result.output
        and "--preset paper: layers=(1, 2, 3), optimizer='sgd'" in result.output
    )


def test_train_with_an_unknown_preset_names_the_presets(tiny_mvtec, tmp_path):
    arguments = [
        "train",
        "-m",
        "stfpm",
        "--preset",
        "fast",
        "--data",
        str(tiny_mvtec),
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1 and "stfpm has no preset 'fast'; its presets: paper" in result.output


def test_export_then_predict_from_the_export(run_dir, tiny_mvtec, tmp_path):
    export = tmp_path / "onnx"
    result = runner.invoke(app, ["export", "--run", str(run_dir), "--format", "onnx", "--out", str(export)])
    assert result.exit_code == 0, result.output
    images = str(tiny_mvtec / "test" / "scratch")
    for source, out in ((["--model", str(export)], "from_export"), (["--run", str(run_dir)], "from_run")):
        result = runner.invoke(app, ["predict", *source, images, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    lines = {
        out: [json.loads(x) for x in (tmp_path / out / "predictions.jsonl").read_text().splitlines()]
        for out in ("from_export", "from_run")
    }
    assert [x["score"] for x in lines["from_export"]] == pytest.approx(
        [x["score"] for x in lines["from_run"]], abs=1e-3
    )
    assert [x["label"] for x in lines["from_export"]] == [x["label"] for x in lines["from_run"]]


def test_int8_export_of_a_run_is_calibrated_and_checked_on_its_own_data(run_dir, tmp_path):
    export = tmp_path / "int8"
    args = [
        "export",
        "--run",
        str(run_dir),
        "--precision",
        "int8",
        "--auroc-tolerance",
        "0.2",
        "--out",
        str(export),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "as onnx (int8)" in result.output
    manifest = json.loads((export / "defectlens.json").read_text())
    # the run's 8 labelled test images (4 good, 4 scratched) checked it
    assert manifest["precision"] == "int8" and manifest["check"]["images"] == 8
    assert manifest["check"]["source"].startswith("mvtec root=")


def test_export_and_predict_errors(run_dir, tiny_mvtec, tmp_path):
    image = str(next((tiny_mvtec / "test" / "good").iterdir()))
    result = runner.invoke(app, ["export", "--run", str(tmp_path / "gone"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "gone" in result.output
    result = runner.invoke(app, ["export", "--run", str(run_dir), "-f", "pmml", "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "format must be one of" in result.output
    result = runner.invoke(app, ["predict", image, "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "exactly one of --run" in result.output
    result = runner.invoke(app, ["predict", "--model", str(tmp_path), image, "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "holds no model" in " ".join(result.output.split())


def test_info_measures_models_and_runs(run_dir):
    result = runner.invoke(app, ["info", "-m", "padim", "--image-size", "64", "--train-images", "10"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "padim" in line)
    # Lite0 up to stage 3: its parameter count, measured on the module
    assert "700,768" in row
    result = runner.invoke(app, ["info", "--run", str(run_dir)])
    assert result.exit_code == 0 and "padim" in result.output


def test_train_tiles_with_a_roi_and_test_reports_it(tiny_mvtec, tmp_path):
    from PIL import Image

    roi = np.zeros((72, 96), np.uint8)
    roi[:, :80] = 255
    Image.fromarray(roi).save(tmp_path / "roi.png")
    run = tmp_path / "tiled"
    args = ["train", "-m", "padim", "--data", str(tiny_mvtec), "--out", str(run), "--image-size", "96"]
    args += ["--tile-size", "64", "--tile-overlap", "0.5", "--roi", str(tmp_path / "roi.png")]
    result = runner.invoke(app, [*args, "--set", "n_features=20"])
    assert result.exit_code == 0, result.output
    params = json.loads((run / "run.json").read_text())["params"]
    assert params["tile_size"] == 64 and params["tile_overlap"] == 0.5 and params["roi"].endswith("roi.png")
    result = runner.invoke(app, ["test", "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["image_auroc"] > 0.9
    assert (run / "report" / "roi.png").is_file()
