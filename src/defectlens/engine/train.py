"""Fit a detector on a dataset and write a run folder."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens import __version__
from defectlens.data import DataSplits
from defectlens.data.io import read_size
from defectlens.engine.runs import CHECKPOINT, TRAINING_DIR, DataSpec, RunInfo, prepare_output, write_json
from defectlens.errors import CheckpointError, ConfigError
from defectlens.models import Detector, create

logger = logging.getLogger(__name__)


SETUP_FILE = "setup.json"


def _check_same_setup(path: Path, model: str, params: dict[str, Any], data: DataSpec, resume: bool) -> None:
    """Record what a run trains; a resumed run must train the same model with the same settings on the
    same data, or its saved state would be silently mixed with another setup."""
    setup = json.loads(json.dumps({"model": model, "params": params, "data": asdict(data)}, default=str))
    if resume:
        if not path.is_file():
            raise CheckpointError(f"cannot resume: {path.parent} holds no training state of an earlier run")
        before = json.loads(path.read_text())
        changed = sorted(
            key for key in set(before) | set(setup) if before.get(key) != setup.get(key)
        ) + sorted(k for k in before.get("params", {}) if before["params"][k] != setup["params"].get(k))
        if changed:
            raise ConfigError(
                f"--resume needs the same model, settings and data as the interrupted run ({path}); "
                f"these differ: {', '.join(changed)}"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, setup)


HINT_RATIO = 2  # training images this many times the model input (shorter sides) get the tiling hint
HINT_SAMPLE = 32  # training images whose size the hint looks at


@dataclass
class TrainResult:
    run: Path
    detector: Detector
    splits: DataSplits
    info: RunInfo
    hint: str | None = None  # a setting that would likely serve these images better


def resolution_hint(detector: Detector, splits: DataSplits, params: dict[str, Any]) -> str | None:
    """One line for a detector left at its default size on images much larger than its input: resizing
    them shrinks small defects to a pixel or two; None otherwise.

    On MVTec screw (1024 px) doubling PatchCore's working resolution to 512 raised image AUROC from 0.82 to
    0.95, and tiles at the native 1024 reached 0.94 at three times that cost (docs/tiling.md), so the hint
    offers the larger whole image first and tiles at native resolution for smaller defects still.
    """
    if "image_size" in params or detector.tiled or not splits.train:
        return None
    sizes = np.array([read_size(r.path) for r in splits.train[:HINT_SAMPLE]])
    height, width = (int(v) for v in np.median(sizes, axis=0))
    side = detector.image_size
    if min(height, width) < HINT_RATIO * side:
        return None
    native = min(height, width) // 32 * 32
    return (
        f"images are {width}x{height} px, {min(height, width) / side:.0f}x the {side} px model input, so "
        f"small defects may shrink to a pixel or two: try --image-size {HINT_RATIO * side}, or tiles at "
        f"native resolution with --image-size {native} --tile-size {side} (docs/tiling.md)"
    )


def train(
    model: str,
    data: DataSpec,
    out: str | Path,
    params: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
    resume: bool = False,
    threshold: float | None = None,
    preset: str | None = None,
) -> TrainResult:
    """Fit `model` on the training split of `data`; write `model.pt` and `run.json` to `out`.

    Models that train for epochs keep their state in `out/training/` after each epoch; `resume=True`
    continues an interrupted run from there (with the same model, settings and data). `threshold` fixes
    the raw image threshold instead of the calibrated one. `preset` names one of the model's presets (e.g.
    "paper"), whose settings `params` override.

    Raises:
        ConfigError: `out` exists and is not empty (without `force` or `resume`), or a setting is invalid.
        CheckpointError: `resume` but `out` holds no training state.
        DataError: the dataset layout is wrong.
    """
    detector = create(model, preset=preset, **(params or {}))
    detector.check_params()  # fail on a bad setting before any data is read
    if resume and force:
        raise ConfigError("--resume continues the run in the folder and --force deletes it: choose one")
    splits = data.load()
    run = Path(out) if resume else prepare_output(Path(out), force, "run folder")
    _check_same_setup(run / TRAINING_DIR / SETUP_FILE, model, detector.get_params(), data, resume)
    logger.info("data %s\n%s", data.describe(), splits.summary())
    start = time.perf_counter()
    detector.fit(splits, progress=progress, work_dir=run / TRAINING_DIR, resume=resume)
    fit_seconds = time.perf_counter() - start
    if threshold is not None:
        detector.set_threshold(image=threshold)
    detector.save(run / CHECKPOINT, force=resume)
    info = RunInfo(
        model=model,
        params=detector.get_params(),
        data=data,
        fit_seconds=round(fit_seconds, 2),
        n_train=len(splits.train),
        n_val=len(splits.val),
        defectlens_version=__version__,
    )
    info.save(run)
    hint = resolution_hint(detector, splits, params or {})
    if hint:
        logger.info("hint: %s", hint)
    return TrainResult(run=run, detector=detector, splits=splits, info=info, hint=hint)
