"""Score new images with a run or an exported model and write predictions.jsonl, masks and overlays.

Nothing here imports torch until a run's checkpoint is opened: an exported model runs without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from defectlens.data.datasets import records_from_paths
from defectlens.data.transforms import Resize
from defectlens.engine.runs import CHECKPOINT, prepare_output, unique_stem
from defectlens.errors import CheckpointError
from defectlens.inference.artifact import MANIFEST
from defectlens.post.prediction import Calibration, Prediction, ScoredBatch
from defectlens.post.tasks import Box, Regions, check_task, regions
from defectlens.reports.figures import overlay, save_image

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"


@runtime_checkable
class Scorer(Protocol):
    """What predicting and serving need: a fitted `Detector` and an exported model's `Inferencer` both
    are one, with the same attributes and the same stream of (names, `Prediction`)."""

    name: str
    runtime: str
    calibration: Calibration
    input_resize: Resize

    def get_params(self) -> dict[str, Any]: ...

    def iter_predict(
        self, images: Any, batch_size: int | None = None, progress: bool = False
    ) -> Iterator[ScoredBatch]: ...

    def predict(self, images: Any, batch_size: int | None = None, progress: bool = False) -> Prediction: ...


def open_scorer(path: str | Path, backend: str = "auto", threads: int | None = None) -> Scorer:
    """The model in `path`: an exported artefact folder (run by `backend`) or a run folder (torch).

    `threads` caps the CPU threads of the runtime (torch's are per process).

    Raises:
        CheckpointError: `path` holds neither.
    """
    path = Path(path)
    if (path / MANIFEST).is_file():
        from defectlens.inference import Inferencer

        return Inferencer(path, backend=backend, threads=threads)
    if (path / CHECKPOINT).is_file():
        import torch

        from defectlens.models import load

        if threads:
            torch.set_num_threads(threads)
        return load(path / CHECKPOINT)
    raise CheckpointError(
        f"{path} holds no model: expected a run folder with {CHECKPOINT} (defectlens train) "
        f"or an exported model with {MANIFEST} (defectlens export)"
    )


def predict_images(
    model: str | Path | Scorer,
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

    Args:
        model: a run folder, an exported model folder, a fitted `Detector` or an `Inferencer`.

    Returns:
        The path of predictions.jsonl.
    """
    task = check_task(task)
    scorer = open_scorer(model) if isinstance(model, str | Path) else model
    records = records_from_paths(inputs)
    out = prepare_output(Path(out), force, "prediction folder")
    used: set[str] = set()
    with (out / PREDICTIONS).open("w") as lines:
        for batch in scorer.iter_predict(records, progress=progress):
            for i, (path, image) in enumerate(zip(batch.names, batch.images, strict=True)):
                name = unique_stem(Path(path), used)
                entry = _write_entry(path, image, batch.prediction, i, task, min_area, out, name)
                lines.write(json.dumps(entry) + "\n")
    return out / PREDICTIONS


def describe(
    name: str, prediction: Prediction, i: int, task: str, min_area: int = 16
) -> tuple[dict[str, Any], np.ndarray, Regions]:
    """The predictions.jsonl object of image `i` (without file references), its heatmap in original
    pixels, and its regions; the service returns the same.

    The image label is the one decision: `mask` (segmentation) and `boxes` (detection) are drawn on
    images judged anomalous only. On an image judged normal, regions above the pixel threshold are listed
    under `below_image_threshold`, never as defects.
    """
    heat = prediction.geometries[i].to_original(prediction.anomaly_map[i])
    anomalous = bool(prediction.label[i])
    found = regions(heat, anomalous, min_area)
    entry: dict[str, Any] = {
        "path": name,
        "score": round(float(prediction.score[i]), 6),
        "label": "anomalous" if anomalous else "normal",
        "raw_score": float(prediction.raw_score[i]),
        "task": task,
    }
    if task == "detection":
        entry["boxes"] = _box_list(found.boxes)
    if found.below_image_threshold:
        entry["below_image_threshold"] = _box_list(found.below_image_threshold)
    return entry, heat, found


def _box_list(boxes: list[Box]) -> list[list[float]]:
    return [[int(x0), int(y0), int(x1), int(y1), round(float(s), 6)] for x0, y0, x1, y1, s in boxes]


def drawn(found: Regions, task: str) -> tuple[np.ndarray | None, list[Box] | None]:
    """What an overlay draws for `task`: the mask for segmentation, the boxes for detection."""
    return (found.mask if task == "segmentation" else None), (found.boxes if task == "detection" else None)


def _write_entry(
    path: str,
    image: np.ndarray,
    prediction: Prediction,
    i: int,
    task: str,
    min_area: int,
    out: Path,
    name: str,
) -> dict:
    entry, heat, found = describe(path, prediction, i, task, min_area)
    return save_pictures(entry, image, heat, found, task, out, name)


def save_pictures(
    entry: dict[str, Any],
    image: np.ndarray,
    heat: np.ndarray,
    found: Regions,
    task: str,
    out: Path,
    name: str,
) -> dict[str, Any]:
    """Write the mask (segmentation) and the overlay of one image under `out` as `name`.png.

    Returns:
        `entry` with the relative paths of the pictures added.
    """
    mask, boxes = drawn(found, task)
    entry = dict(entry)
    if mask is not None:
        entry["mask"] = str(save_image(mask, out / "masks" / f"{name}.png").relative_to(out))
    picture = overlay(image, heat, pred_mask=mask, boxes=boxes)
    entry["overlay"] = str(save_image(picture, out / "overlays" / f"{name}.png").relative_to(out))
    return entry
