"""Fit a detector on a dataset and write a run folder."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectlens import __version__
from defectlens.data import DataSplits
from defectlens.engine.runs import CHECKPOINT, DataSpec, RunInfo, prepare_output
from defectlens.models import Detector, create

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run: Path
    detector: Detector
    splits: DataSplits
    info: RunInfo


def train(
    model: str,
    data: DataSpec,
    out: str | Path,
    params: dict[str, Any] | None = None,
    force: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Fit `model` on the training split of `data`; write `model.pt` and `run.json` to `out`.

    Raises:
        ConfigError: `out` exists and is not empty (without `force`), or a setting is invalid.
        DataError: the dataset layout is wrong.
    """
    detector = create(model, **(params or {}))
    detector._check_params()  # fail on a bad setting before any data is read
    splits = data.load()
    run = prepare_output(Path(out), force, "run folder")
    logger.info("data %s\n%s", data.describe(), splits.summary())
    start = time.perf_counter()
    detector.fit(splits, progress=progress)
    fit_seconds = time.perf_counter() - start
    detector.save(run / CHECKPOINT)
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
    return TrainResult(run=run, detector=detector, splits=splits, info=info)
