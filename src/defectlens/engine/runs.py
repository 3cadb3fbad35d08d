"""Run folders and the data specs they record, so `test --run` finds the same split again."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from defectlens.data import DataSplits, load_elpv, load_folder, load_mvtec
from defectlens.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
RUN_INFO = "run.json"
METRICS = "metrics.json"
REPORT = "report"
TRAINING_DIR = "training"
TEST_PREDICTIONS = "test_predictions.jsonl"  # one line per test image: truth, scores, label, boxes
# Per test image, its heatmap overlay with boxes, fitting THUMBNAIL_SIDE px: the review page's cards
TEST_OVERLAYS = "test_overlays"
THUMBNAIL_SIDE = 192
FEEDBACK_DB = "feedback.sqlite"


@dataclass(frozen=True)
class DataSpec:
    """How to load a dataset again: `kind` is mvtec, folder or elpv; `args` go to its loader."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def load(self) -> DataSplits:
        loaders = {"mvtec": load_mvtec, "folder": load_folder, "elpv": load_elpv}
        if self.kind not in loaders:
            raise ConfigError(f"data kind must be one of {sorted(loaders)}, got '{self.kind}'")
        return loaders[self.kind](**self.args)

    def describe(self) -> str:
        return f"{self.kind} " + " ".join(f"{k}={v}" for k, v in self.args.items())

    @staticmethod
    def mvtec(root: str | Path, val_fraction: float = 0.1, seed: int = 0) -> DataSpec:
        return DataSpec(
            "mvtec", {"root": str(Path(root).resolve()), "val_fraction": val_fraction, "seed": seed}
        )

    @staticmethod
    def folder(
        good: str | Path,
        abnormal: list[str | Path] | tuple = (),
        masks: str | Path | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
    ) -> DataSpec:
        return DataSpec(
            "folder",
            {
                "good": str(Path(good).resolve()),
                "abnormal": [str(Path(a).resolve()) for a in abnormal],
                "masks": str(Path(masks).resolve()) if masks else None,
                "val_fraction": val_fraction,
                "seed": seed,
            },
        )

    @staticmethod
    def elpv(cell_type: str = "mono", val_fraction: float = 0.1, seed: int = 0) -> DataSpec:
        return DataSpec("elpv", {"cell_type": cell_type, "val_fraction": val_fraction, "seed": seed})


def prepare_output(path: Path, force: bool, what: str) -> Path:
    """Create folder `path`; an existing non-empty one is replaced only with `force`."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not force:
            raise ConfigError(f"{what} {path} already exists and is not empty; pass --force to overwrite it")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def unique_stem(path: Path, used: set[str]) -> str:
    """The file's stem, made unique among `used` (images from several folders may share a name)."""
    name = path.stem
    while name in used:
        name += "_"
    used.add(name)
    return name


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


@dataclass
class RunInfo:
    """What `run.json` holds: the model, its data, and how long fitting took."""

    model: str
    params: dict[str, Any]
    data: DataSpec
    fit_seconds: float
    n_train: int
    n_val: int
    defectlens_version: str

    def save(self, run: Path) -> Path:
        return write_json(run / RUN_INFO, asdict(self))

    @staticmethod
    def load(run: Path) -> RunInfo:
        path = Path(run) / RUN_INFO
        if not path.is_file():
            raise CheckpointError(f"{run} is not a defectlens run folder: {path} is missing")
        try:
            raw = json.loads(path.read_text())
            raw["data"] = DataSpec(**raw["data"])
            return RunInfo(**raw)
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"cannot read run description {path}: {error}") from error
