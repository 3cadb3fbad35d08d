"""Evaluate a run on its test split: metrics.json and a report folder with pictures."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens import metrics, reports
from defectlens.core.context import progress_bar
from defectlens.data import Record, read_mask
from defectlens.data.inputs import as_dataset, loader
from defectlens.engine.predict import describe
from defectlens.engine.runs import (
    CHECKPOINT,
    METRICS,
    REPORT,
    TEST_OVERLAYS,
    TEST_PREDICTIONS,
    THUMBNAIL_SIDE,
    DataSpec,
    RunInfo,
    prepare_output,
    unique_stem,
    write_json,
)
from defectlens.errors import ConfigError, DataError
from defectlens.models import Detector, Prediction, load
from defectlens.post.tasks import Box, Regions

logger = logging.getLogger(__name__)


FIXED_RATES = (0.001, 0.01, 0.05)  # false-reject rates the recall is reported at
# Report pictures wider or taller than this are shrunk to it, and the strongest boxes of the image get
# pictures of their own at full resolution (writing 3072x1152 panels cost more than the model on MVTec screw).
PANEL_SIDE = 1024
PANEL_CROPS = 3
CROP_MARGIN = 32


@dataclass
class Scored:
    """Raw scores of a labelled set, and maps and masks cropped to each image's content."""

    raw_scores: np.ndarray
    labels: np.ndarray
    defect_types: list[str]
    maps: list[np.ndarray]
    masks: list[np.ndarray]

    @property
    def has_pixels(self) -> bool:
        """True when every image has a ground-truth mask (all-False for good images)."""
        return len(self.masks) == len(self.labels)

    def evaluate(self, threshold: float) -> dict[str, Any]:
        """All metrics; pixel metrics only when every image has a mask."""
        pixels = (self.masks, self.maps) if self.has_pixels else (None, None)
        return metrics.evaluate(self.labels, self.raw_scores, threshold, *pixels)

    def at_threshold(self, threshold: float) -> dict[str, Any]:
        """False-reject rate and recall at a raw threshold, overall and per defect type, and the recall
        the test set shows at fixed false-reject rates."""
        false_reject, recall = metrics.rates_at(self.labels, self.raw_scores, threshold)
        types = np.array(self.defect_types)
        per_type = {
            t: round(float((self.raw_scores[types == t] >= threshold).mean()), 4)
            for t in sorted(set(self.defect_types))
            if self.labels[types == t][0] == 1
        }
        return {
            "test_false_reject_rate": round(false_reject, 4),
            "test_recall": round(recall, 4),
            "test_recall_per_defect_type": per_type,
            "recall_at_false_reject_rate": {
                str(rate): round(metrics.recall_at_false_reject_rate(self.labels, self.raw_scores, rate), 4)
                for rate in FIXED_RATES
            },
        }

    def per_type_auroc(self) -> dict[str, float]:
        """Image AUROC of each defect type against all good images."""
        by_type: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(self.defect_types):
            by_type[t].append(i)
        good = [i for i, label in enumerate(self.labels) if label == 0]
        return {
            t: round(metrics.image_auroc(self.labels[good + idx], self.raw_scores[good + idx]), 4)
            for t, idx in sorted(by_type.items())
            if self.labels[idx[0]] == 1 and good
        }


def score_records(
    detector: Detector,
    records: list[Record],
    on_image: Callable[[Record, np.ndarray, Prediction, int], None] | None = None,
    progress: bool = False,
) -> Scored:
    """Predict labelled records batch by batch; `on_image(record, image, prediction, index)` sees each
    image as decoded, with its batch's prediction."""
    scores, labels, types, maps, masks = [], [], [], [], []
    offset = 0
    calibration = detector.calibration
    data = loader(as_dataset(records, detector.input_resize), detector.batch_size)
    for batch in progress_bar(data, progress, "test"):
        prediction = calibration.apply(*detector.score_batch(batch.images), batch.geometries)
        scores.append(prediction.raw_score)
        labels.append(batch.labels.numpy())
        types += batch.defect_types
        for i, (mask, geometry) in enumerate(zip(batch.masks, prediction.geometries, strict=True)):
            if mask is not None:
                maps.append(geometry.crop_content(prediction.raw_map[i]))
                masks.append(geometry.crop_content(mask.numpy()))
            if on_image is not None:
                on_image(records[offset + i], batch.originals[i], prediction, i)
        offset += len(batch)
    return Scored(np.concatenate(scores), np.concatenate(labels), types, maps, masks)


def write_panel(
    path: Path,
    record: Record,
    image: np.ndarray,
    prediction: Prediction,
    index: int,
    heat: np.ndarray,
    found: Regions,
) -> None:
    """One report picture: the image, its heatmap with predicted mask and boxes, and the ground truth.

    Args:
        heat, found: image `index`'s heatmap in original pixels and its regions (see `describe`).
    """
    gt = read_mask(record.mask_path) if record.mask_path else None
    verdict = "ANOMALOUS" if prediction.label[index] else "normal"
    if found.below_image_threshold:
        verdict += f" ({len(found.below_image_threshold)} region(s) below the image threshold)"
    title = f"{record.defect_type}  score {prediction.score[index]:.3f}  {verdict}"
    columns = 2 if gt is None else 3
    scale = PANEL_SIDE / max(heat.shape[0], columns * heat.shape[1])
    if scale >= 1:
        reports.save_image(reports.panel(image, heat, found.mask, gt, found.boxes, title=title), path)
        return
    height, width = heat.shape
    for number, box in enumerate(found.boxes[:PANEL_CROPS], 1):  # strongest first
        x0, y0, x1, y1 = (round(float(v)) for v in box[:4])
        rows = slice(max(0, y0 - CROP_MARGIN), min(height, y1 + CROP_MARGIN))
        cols = slice(max(0, x0 - CROP_MARGIN), min(width, x1 + CROP_MARGIN))
        local = [(x0 - cols.start, y0 - rows.start, x1 - cols.start, y1 - rows.start, box[4])]
        crop_gt = None if gt is None else gt[rows, cols]
        crop = reports.panel(
            image[rows, cols], heat[rows, cols], found.mask[rows, cols], crop_gt, local, f"box {number}"
        )
        reports.save_image(crop, path.with_name(f"{path.stem}.box{number}.png"))
    reports.save_image(
        reports.panel(*reports.shrink(scale, image, heat, found.mask, gt, found.boxes), title=title), path
    )


def write_overlay_thumbnail(path: Path, image: np.ndarray, heat: np.ndarray, boxes: list[Box]) -> Path:
    """The review page's card of an image: its heatmap and boxes, fitting `THUMBNAIL_SIDE` px, as JPEG.

    The inputs are shrunk before drawing, which costs far less than drawing at full size, and JPEG
    encodes in 0.2 ms where PNG took 5.8 ms: on MTD a card costs `defectlens test` 1.6 ms an image.
    """
    scale = THUMBNAIL_SIDE / max(heat.shape)
    if scale < 1:
        image, heat, _, _, boxes = reports.shrink(scale, image, heat, boxes=boxes)
    return reports.save_jpeg(reports.overlay(image, heat, boxes=boxes), path)


def evaluate_run(
    run: str | Path,
    data: DataSpec | None = None,
    report: bool = True,
    min_area: int = 16,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Score the test split of the run's data (or of `data`), write metrics.json, test_predictions.jsonl
    with a small overlay per image (for `defectlens review`), and the report.

    Returns:
        The metrics dictionary that was written.
    """
    run = Path(run)
    info = RunInfo.load(run)
    detector: Detector = load(run / CHECKPOINT)
    spec = data or info.data
    test = spec.load().test
    if not test:
        raise DataError(f"the test split of {spec.describe()} is empty: nothing to evaluate")
    if (run / METRICS).exists() and not force:
        raise ConfigError(f"{run / METRICS} exists from an earlier test; pass --force to overwrite it")
    report_dir = prepare_output(run / REPORT, force, "report folder") if report else None
    overlay_dir = prepare_output(run / TEST_OVERLAYS, force, "overlay folder")
    used: set[str] = set()
    figure_seconds = 0.0
    per_image: list[dict[str, Any]] = []

    def on_image(record: Record, image: np.ndarray, prediction: Prediction, index: int) -> None:
        nonlocal figure_seconds
        # the same object as a `defectlens predict --task detection` line, plus the ground truth
        entry, heat, found = describe(str(record.path), prediction, index, "detection", min_area)
        tic = time.perf_counter()
        name = unique_stem(record.path, used)
        thumbnail = write_overlay_thumbnail(
            overlay_dir / record.defect_type / f"{name}.jpg", image, heat, found.boxes
        )
        entry["overlay"] = str(thumbnail.relative_to(run))
        entry["truth"] = "anomalous" if record.label == 1 else "normal"
        entry["defect_type"] = record.defect_type
        entry["truth_mask"] = str(record.mask_path) if record.mask_path else None
        per_image.append(entry)
        if report_dir is not None:
            path = report_dir / "images" / record.defect_type / f"{name}.png"
            write_panel(path, record, image, prediction, index, heat, found)
        figure_seconds += time.perf_counter() - tic

    start = time.perf_counter()
    scored = score_records(detector, test, on_image, progress)
    elapsed = time.perf_counter() - start - figure_seconds  # decoding, model and post-processing
    calibration = detector.calibration
    threshold = calibration.image_threshold
    result = scored.evaluate(threshold)
    result["operating_point"] = {**calibration.operating_point(), **scored.at_threshold(threshold)}
    if not scored.has_pixels:
        result["pixel_note"] = "not every anomalous test image has a ground-truth mask: pixel metrics skipped"
    raw_scores, labels = scored.raw_scores, scored.labels
    result["per_defect_type_auroc"] = scored.per_type_auroc()
    result["images_per_second"] = round(len(test) / elapsed, 2)
    result["pixel_threshold"] = calibration.pixel_threshold_value
    result["data"] = spec.describe()
    write_json(run / METRICS, result)
    (run / TEST_PREDICTIONS).write_text("".join(json.dumps(entry) + "\n" for entry in per_image))
    if report_dir is not None:
        if detector.region_of_interest is not None:
            reports.save_image(
                np.repeat(detector.region_of_interest[..., None] * np.uint8(255), 3, 2),
                report_dir / "roi.png",
            )
        reports.save_roc_curve(labels, raw_scores, report_dir / "roc.png", title=f"{info.model}: image ROC")
        reports.save_score_histogram(
            labels, raw_scores, threshold, report_dir / "histogram.png", title=f"{info.model}: scores"
        )
        reports.save_operating_curve(
            labels,
            raw_scores,
            threshold,
            report_dir / "operating_point.png",
            target_rate=result["operating_point"].get("rate"),
            title=f"{info.model}: recall against false-reject rate",
        )
    return result
