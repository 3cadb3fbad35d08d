"""Score new images with a fitted run and write predictions.jsonl, masks and overlays."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defectlens.data import read_image, records_from_paths
from defectlens.engine.runs import CHECKPOINT, prepare_output, unique_stem
from defectlens.models import Detector, load
from defectlens.post.tasks import check_task, detect, segment
from defectlens.reports import overlay, save_image

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"


def predict_images(
    run: str | Path | Detector,
    inputs: Sequence[str | Path],
    out: str | Path,
    task: str = "segmentation",
    min_area: int = 16,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write one JSON line per image to `out/predictions.jsonl`, plus mask and overlay PNGs.

    Each line holds `path`, `score` (normalised, threshold at 0.5), `label` (normal/anomalous),
    `raw_score` and `task`; segmentation adds `mask` (a PNG path), detection adds `boxes`
    ([x0, y0, x1, y1, score] in original image pixels, x1/y1 exclusive). Every task writes an overlay.

    Returns:
        The path of predictions.jsonl.
    """
    task = check_task(task)
    detector = run if isinstance(run, Detector) else load(Path(run) / CHECKPOINT)
    records = records_from_paths(inputs)
    out = prepare_output(Path(out), force, "prediction folder")
    used: set[str] = set()
    with (out / PREDICTIONS).open("w") as lines:
        offset = 0
        for batch, prediction in detector.iter_predict(records, progress=progress):
            for i in range(len(batch)):
                record = records[offset + i]
                name = unique_stem(record.path, used)
                lines.write(
                    json.dumps(_describe(record.path, prediction, i, task, min_area, out, name)) + "\n"
                )
            offset += len(batch)
    return out / PREDICTIONS


def _describe(path: Path, prediction: Any, i: int, task: str, min_area: int, out: Path, name: str) -> dict:
    heat = prediction.geometries[i].to_original(prediction.anomaly_map[i])
    entry: dict[str, Any] = {
        "path": str(path),
        "score": round(float(prediction.score[i]), 6),
        "label": "anomalous" if prediction.label[i] else "normal",
        "raw_score": float(prediction.raw_score[i]),
        "task": task,
    }
    mask = boxes = None
    if task == "segmentation":
        mask = segment(heat)
        entry["mask"] = str(save_image(mask, out / "masks" / f"{name}.png").relative_to(out))
    elif task == "detection":
        boxes = detect(heat, min_area)
        entry["boxes"] = [
            [int(x0), int(y0), int(x1), int(y1), round(float(s), 6)] for x0, y0, x1, y1, s in boxes
        ]
    picture = overlay(read_image(path), heat, pred_mask=mask, boxes=boxes)
    entry["overlay"] = str(save_image(picture, out / "overlays" / f"{name}.png").relative_to(out))
    return entry
