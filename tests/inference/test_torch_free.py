"""Predicting from an exported model must work where torch cannot even be imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from defectlens.data import load_mvtec
from defectlens.export import export_detector
from defectlens.models import create

BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, BlockTorch())
from defectlens.cli import app
app(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def exported(tiny_mvtec, tmp_path_factory):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = create("padim", image_size=64, batch_size=4, device="cpu").fit(splits)
    return export_detector(detector, tmp_path_factory.mktemp("artefact") / "padim", "onnx"), detector


def test_cli_predict_from_export_without_torch(exported, tiny_mvtec, tmp_path):
    artefact, detector = exported
    images = tiny_mvtec / "test" / "scratch"
    command = [sys.executable, "-c", BLOCK_TORCH, "predict", "--model", str(artefact), str(images)]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "p"), "--task", "detection"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    reference = detector.predict(sorted(images.iterdir()))
    assert [round(line["score"], 4) for line in lines] == pytest.approx(reference.score.round(4), abs=1e-3)
    assert all("boxes" in line for line in lines)


def test_blocked_torch_really_blocks(tmp_path):
    code = BLOCK_TORCH.replace("from defectlens.cli import app\napp(sys.argv[1:])", "import torch")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_service_over_an_export_imports_no_torch(exported):
    artefact, _ = exported
    code = BLOCK_TORCH.replace(
        "from defectlens.cli import app\napp(sys.argv[1:])",
        "from defectlens.serve import create_app, open_served_model\n"
        f"app = create_app(open_served_model({str(artefact)!r}))\n"
        "assert 'torch' not in sys.modules",
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
