"""Reduced-precision exports: INT8 quantisation calibrated on good images and FP16 weights, each checked
by its image AUROC on labelled images. The refusal of an export that moves it too far is tested on real
tiles (tests/test_realdata.py), where a bad calibration does move it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from defectlens.data import load_mvtec
from defectlens.errors import ConfigError
from defectlens.export import export_detector
from defectlens.inference import MANIFEST, Inferencer


@pytest.fixture(scope="module", params=["padim", "patchcore"])
def fitted(request, tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    return quick(request.param).fit(splits), splits


def _quantised_ops(out, fmt: str) -> int:
    """How many int8 quantisation points the exported graph holds."""
    if fmt == "onnx":
        return sum(node.op_type == "QuantizeLinear" for node in onnx.load(str(out / "model.onnx")).graph.node)
    return (out / "model.xml").read_text().count('type="FakeQuantize"')


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_int8_export_quantises_the_convolutions_and_keeps_the_ranking(fitted, fmt, tmp_path):
    detector, splits = fitted
    out = export_detector(
        detector, tmp_path / fmt, fmt, precision="int8", calibration=splits.train, check=splits.test
    )
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["precision"] == "int8"
    check = manifest["check"]
    assert check["images"] == len(splits.test) and check["auroc_tolerance"] == 0.005
    assert abs(check["image_auroc"] - check["image_auroc_fp32"]) <= 0.005
    assert _quantised_ops(out, fmt) > 10  # every convolution of the backbone, not a float graph renamed
    exported = Inferencer(out).predict(splits.test)
    assert exported.raw_score.std() > 0  # not the collapse of a quantised map smoothing
    reference = detector.predict(splits.test)
    difference = np.abs(exported.score - reference.score).max()
    assert check["max_normalized_score_difference"] == pytest.approx(difference, abs=1e-5)


def test_fp16_export_stores_half_precision_weights(fitted, tmp_path):
    detector, splits = fitted
    fp32 = export_detector(detector, tmp_path / "fp32", "openvino")
    fp16 = export_detector(detector, tmp_path / "fp16", "openvino", precision="fp16", check=splits.test)
    assert (fp16 / "model.bin").stat().st_size < 0.6 * (fp32 / "model.bin").stat().st_size
    assert json.loads((fp32 / MANIFEST).read_text())["precision"] == "fp32"
    scores = Inferencer(fp16).predict(splits.test).score
    assert np.abs(scores - detector.predict(splits.test).score).max() < 0.05


def test_reduced_precision_needs_its_images_and_a_format_that_has_it(fitted, tmp_path):
    detector, splits = fitted
    with pytest.raises(
        ConfigError, match="needs good and defective images; the check images has 12 good and 0"
    ):
        export_detector(
            detector, tmp_path / "a", "onnx", precision="int8", calibration=splits.train, check=splits.train
        )
    with pytest.raises(ConfigError, match="needs good calibration images; none were given"):
        export_detector(detector, tmp_path / "b", "onnx", precision="int8", check=splits.test)
    with pytest.raises(ConfigError, match="torchscript is float32 only"):
        export_detector(detector, tmp_path / "c", "torchscript", precision="fp16", check=splits.test)
    with pytest.raises(ConfigError, match=r"precision must be one of \['fp32', 'fp16', 'int8'\], got 'int4'"):
        export_detector(detector, tmp_path / "d", "onnx", precision="int4")
    with pytest.raises(ConfigError, match="auroc_tolerance must be in"):
        export_detector(
            detector, tmp_path / "e", "onnx", precision="fp16", check=splits.test, auroc_tolerance=-1
        )
    assert not any((tmp_path / name).exists() for name in "abcde")
