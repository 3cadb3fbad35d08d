"""Every registered detector exports to every format and the artefact agrees with the torch model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from defectlens.data import load_mvtec
from defectlens.errors import CheckpointError, ConfigError, DataError
from defectlens.export import export_detector, export_run
from defectlens.inference import MANIFEST, Inferencer
from defectlens.models import detector_class, list_detectors
from defectlens.post.tasks import detect, segment

FORMATS = ("onnx", "openvino", "torchscript")


EXPORTABLE = [name for name in list_detectors() if detector_class(name).exportable]


@pytest.fixture(scope="module", params=EXPORTABLE)
def fitted(request, tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick(request.param)
    return detector.fit(splits), splits


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_matches_torch_scores_masks_and_boxes(fitted, fmt, tmp_path):
    detector, splits = fitted
    out = export_detector(detector, tmp_path / fmt, fmt)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["detector"] == detector.name and manifest["format"] == fmt
    assert manifest["input"]["size"] == [64, 64] and manifest["input"]["range"] == [0.0, 1.0]
    assert manifest["calibration"] == detector.calibration_.to_dict()
    exported = Inferencer(out).predict(splits.test, batch_size=3)  # a batch size other than the trace's
    reference = detector.predict(splits.test)
    assert np.abs(exported.score - reference.score).max() < 1e-3
    np.testing.assert_array_equal(exported.label, reference.label)
    assert np.abs(exported.anomaly_map - reference.anomaly_map).max() < 1e-3
    assert (exported.mask != reference.mask).mean() < 1e-3
    for i, geometry in enumerate(reference.geometries):
        ours, theirs = (geometry.to_original(p.anomaly_map[i]) for p in (exported, reference))
        assert (segment(ours) != segment(theirs)).mean() < 1e-3
        np.testing.assert_allclose(detect(ours), detect(theirs), atol=1e-3)


def test_onnx_export_also_runs_on_openvino(fitted, tmp_path):
    detector, splits = fitted
    out = export_detector(detector, tmp_path / "onnx", "onnx")
    scores = Inferencer(out, backend="openvino").predict(splits.test).score
    assert np.abs(scores - detector.predict(splits.test).score).max() < 1e-3


def test_export_refuses_existing_folder_and_unknown_format(fitted, tmp_path):
    detector, _ = fitted
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="already exists"):
        export_detector(detector, tmp_path / "taken", "onnx")
    assert (tmp_path / "taken" / "keep.txt").exists()
    with pytest.raises(ConfigError, match="format must be one of"):
        export_detector(detector, tmp_path / "x", "tflite")


def test_export_of_missing_run_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="no trained model to export: .*nowhere"):
        export_run(tmp_path / "nowhere", tmp_path / "out")


@pytest.fixture(scope="module")
def onnx_export(fitted, tmp_path_factory):
    detector, _ = fitted
    return export_detector(detector, tmp_path_factory.mktemp("export") / "onnx", "onnx")


def test_corrupt_artefact_is_refused(onnx_export, tmp_path):
    import shutil

    broken = shutil.copytree(onnx_export, tmp_path / "broken")
    with (broken / "model.onnx").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="corrupt or was replaced"):
        Inferencer(broken)
    with pytest.raises(CheckpointError, match="onnxruntime cannot load"):
        Inferencer(broken, verify=False)
    (broken / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        Inferencer(broken)
    (broken / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="not an exported defectlens model"):
        Inferencer(broken)
    with pytest.raises(CheckpointError, match="not found"):
        Inferencer(tmp_path / "missing")


def test_wrong_backend_and_wrong_inputs(onnx_export):
    with pytest.raises(ConfigError, match="cannot run a onnx export"):
        Inferencer(onnx_export, backend="torchscript")
    with pytest.raises(ConfigError, match="backend must be"):
        Inferencer(onnx_export, backend="tensorrt")
    inferencer = Inferencer(onnx_export)
    with pytest.raises(DataError, match=r"image 0 must be .*got shape \(32, 32, 2\)"):
        inferencer.predict(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(DataError, match=r"takes \(B, 3, 64, 64\) batches"):
        inferencer.score_batch(np.zeros((1, 1, 64, 64), np.float32))
    with pytest.raises(DataError, match="does not exist"):
        inferencer.predict(["/no/such/image.png"])
