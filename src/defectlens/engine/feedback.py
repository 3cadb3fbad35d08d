"""Fold a reviewer's marks back into a run: more good images, a threshold set with the marked defects.

Images marked "actually good" join the training data (PatchCore: its memory bank grows, no full
refit). The images marked "actually defective" join the calibration: they decide the threshold under
the "recall" and "f1" policies and add to the recall the operating point reports; the good calibration
scores are the out-of-fold ones kept from fitting, or the held-out validation images scored again.
Before/after metrics are computed on the test images that were not marked, so the marked images never
grade their own correction. The previous checkpoint is kept next to the new one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from defectlens.data.datasets import Record
from defectlens.engine.marks import FeedbackStore
from defectlens.engine.runs import CHECKPOINT, FEEDBACK_DB, RunInfo, write_json
from defectlens.engine.test import score_records
from defectlens.errors import ConfigError
from defectlens.models import Detector, load

logger = logging.getLogger(__name__)

FEEDBACK_LOG = "feedback.json"
REPORTED = ("image_auroc", "image_f1", "threshold", "pixel_auroc", "n_images", "n_anomalous")


def refit_with_feedback(run: str | Path, progress: bool = True) -> dict[str, Any]:
    """Apply the marks stored in `run/feedback.sqlite` to the run's model and record the effect.

    Returns:
        The entry appended to `run/feedback.json`: counts, before/after metrics, the backup checkpoint.

    Raises:
        ConfigError: there are no marks.
        CheckpointError: `run` is not a run folder.
    """
    run = Path(run)
    info = RunInfo.load(run)
    detector = load(run / CHECKPOINT)
    marks = FeedbackStore(run / FEEDBACK_DB).all() if (run / FEEDBACK_DB).is_file() else {}
    if not marks:
        raise ConfigError(
            f"no marks in {run / FEEDBACK_DB}: mark images with `defectlens review --run {run}` first"
        )
    splits = info.data.load()
    good = [Record(Path(p), 0, "good") for p, mark in marks.items() if mark == "good"]
    defective = [Record(Path(p), 1, "feedback") for p, mark in marks.items() if mark == "defective"]
    unmarked_test = [r for r in splits.test if str(r.path) not in marks]
    before = _metrics(detector, unmarked_test)

    history = json.loads((run / FEEDBACK_LOG).read_text()) if (run / FEEDBACK_LOG).is_file() else []
    backup = run / f"model.before-feedback-{len(history) + 1}.pt"
    shutil.copy2(run / CHECKPOINT, backup)
    if good:
        detector.extend(good, train=splits.train, progress=progress)
    # Out-of-fold models trained on the carved val images too: their kept out-of-fold scores stay valid.
    out_of_fold = detector.calibration_scores == "out-of-fold" and splits.val_carved
    if not out_of_fold:
        detector.calibrate(list(splits.val) + defective, progress=progress)
    elif defective:
        detector.calibrate(defective, progress=progress, keep_good=True)
    after = _metrics(detector, unmarked_test)
    detector.save(run / CHECKPOINT, force=True)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "marked_good": len(good),
        "marked_defective": len(defective),
        "evaluated_on": f"{len(unmarked_test)} test images that were not marked",
        "before": before,
        "after": after,
        "previous_checkpoint": backup.name,
    }
    write_json(run / FEEDBACK_LOG, [*history, entry])
    logger.info("feedback applied: %s", json.dumps(entry))
    return entry


def _metrics(detector: Detector, records: list[Record]) -> dict[str, Any] | None:
    if not records or len({r.label for r in records}) < 2:
        return None  # AUROC needs good and defective test images
    result = score_records(detector, records).evaluate(detector.calibration.image_threshold)
    return {key: result.get(key) for key in REPORTED}
