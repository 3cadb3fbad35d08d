"""One decision per image: a normal image gets no defect box anywhere, only regions below the image
threshold, the same in the CLI's predictions.jsonl, the service, the exported inferencer and the report."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from defectlens.cli import app
from defectlens.data import load_mvtec
from defectlens.engine.predict import describe
from defectlens.export import export_detector
from defectlens.inference import Inferencer
from defectlens.serve import create_app, open_served_model


@pytest.fixture(scope="module")
def borderline(tiny_mvtec, tmp_path_factory, quick):
    """A detector whose image threshold sits just above a scratched image's score while its pixel
    threshold is low: the image is judged normal although its map has regions over the pixel threshold."""
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("padim").fit(splits)
    scratched = next(r for r in splits.test if r.label == 1)
    prediction = detector.predict([scratched.path])
    detector.set_threshold(
        image=float(prediction.raw_score[0]) * 1.01, pixel=float(prediction.raw_map[0].max()) * 0.5
    )
    root = tmp_path_factory.mktemp("decision")
    (root / "run").mkdir()
    detector.save(root / "run" / "model.pt")
    return detector, root, export_detector(detector, root / "onnx", "onnx"), scratched


def test_a_normal_image_has_no_defect_box_anywhere(borderline, server):
    detector, root, export, scratched = borderline
    jsonl = root / "preds"
    args = ["predict", "--run", str(root / "run"), str(scratched.path), "--out", str(jsonl)]
    result = CliRunner().invoke(app, [*args, "--task", "detection"])
    assert result.exit_code == 0, result.output
    from_cli = json.loads((jsonl / "predictions.jsonl").read_text().splitlines()[0])

    with server(create_app(open_served_model(export))) as url:
        answer = httpx.post(
            f"{url}/v1/predict",
            files=[("file", (scratched.path.name, scratched.path.read_bytes(), "image/png"))],
            params={"task": "detection", "include": "mask"},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    from_service = answer.json()["predictions"][0]
    from_export, _, found = describe("x", Inferencer(export).predict([scratched.path]), 0, "detection")

    for entry in (from_cli, from_service, from_export):
        assert entry["label"] == "normal" and entry["boxes"] == []
        assert len(entry["below_image_threshold"]) >= 1
    assert from_service["below_image_threshold"] == from_cli["below_image_threshold"]
    assert from_export["below_image_threshold"] == from_cli["below_image_threshold"]
    assert not found.mask.any()
    assert not detector.predict([scratched.path]).mask.any()


def test_segmentation_writes_an_empty_mask_for_a_normal_image(borderline):
    _, root, _, scratched = borderline
    out = root / "seg"
    result = CliRunner().invoke(
        app, ["predict", "--run", str(root / "run"), str(scratched.path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "predictions.jsonl").read_text())
    from defectlens.data import read_mask

    assert entry["label"] == "normal" and not read_mask(out / entry["mask"]).any()
