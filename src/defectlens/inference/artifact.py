"""The exported artefact: a model file (or two) and `defectlens.json`, its manifest.

The manifest says everything a runtime needs without training code: the input contract (size,
resize mode, value range, layout), what the outputs mean, the calibration (thresholds and score
normalisation), and a sha256 per file so a corrupt or swapped artefact is refused, not run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from defectlens.errors import CheckpointError

MANIFEST = "defectlens.json"
FORMAT_VERSION = 2  # 2: precision and check
FORMATS = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin"), "torchscript": ("model.ts",)}
INPUT_NAME = "image"
OUTPUT_NAMES = ("score", "anomaly_map")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What `defectlens.json` holds.

    Attributes:
        detector: registered detector name the artefact came from.
        params: its hyper-parameters.
        format: onnx, openvino or torchscript.
        precision: fp32, fp16 (half-precision weights) or int8 (quantised convolutions).
        input: the graph's input contract: name, layout, dtype, size (H, W), resize, value range.
        calibration: `Calibration.to_dict()`: thresholds and the good statistics of the normalisers.
        check: how the export was checked against the torch model (images, score difference, and for a
            reduced precision the image AUROC of both).
        files: file name -> sha256, the first being the one a runtime opens.
    """

    detector: str
    params: dict[str, Any]
    format: str
    input: dict[str, Any]
    calibration: dict[str, Any]
    precision: str = "fp32"
    check: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(
        default_factory=lambda: {
            "score": "(B,) float32 raw image score, higher = more anomalous",
            "anomaly_map": "(B, H, W) float32 raw anomaly map at the input size",
        }
    )
    defectlens_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def model_file(self) -> str:
        return FORMATS[self.format][0]

    def save(self, directory: Path) -> Path:
        self.files = {name: sha256(directory / name) for name in FORMATS[self.format]}
        path = directory / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @staticmethod
    def load(directory: str | Path, verify: bool = True) -> Manifest:
        """Read and check an artefact folder.

        Raises:
            CheckpointError: the folder or manifest is missing or unreadable, it was written by a newer
                defectlens, a file is missing, or a file's checksum differs (`verify`).
        """
        directory = Path(directory)
        path = directory / MANIFEST
        if not directory.is_dir():
            raise CheckpointError(f"exported model folder not found: {directory}")
        if not path.is_file():
            raise CheckpointError(
                f"{directory} is not an exported defectlens model: {MANIFEST} is missing "
                "(write one with `defectlens export --run RUN --out DIR`)"
            )
        try:
            raw = json.loads(path.read_text())
            manifest = Manifest(**raw)
        except (OSError, ValueError, TypeError) as error:
            raise CheckpointError(f"cannot read {path}: {error}") from error
        if manifest.format_version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has format {manifest.format_version}; this defectlens reads up to {FORMAT_VERSION}"
            )
        if manifest.format not in FORMATS:
            raise CheckpointError(
                f"{path}: unknown format '{manifest.format}', expected one of {list(FORMATS)}"
            )
        for name in FORMATS[manifest.format]:
            file = directory / name
            if not file.is_file():
                raise CheckpointError(f"exported model file missing: {file}")
            if verify and sha256(file) != manifest.files.get(name):
                raise CheckpointError(
                    f"exported model file {file} is corrupt or was replaced: its sha256 differs from {path}"
                )
        return manifest
