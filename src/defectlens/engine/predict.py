"""Score new images with a run or an exported model and write predictions.jsonl, masks and overlays.

Nothing here imports torch until a run's checkpoint is opened: an exported model runs without it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from defectlens.data.datasets import records_from_paths
from defectlens.data.io import read_image
from defectlens.data.transforms import Resize
from defectlens.engine.runs import CHECKPOINT, prepare_output, unique_stem
from defectlens.errors import CheckpointError, ConfigError, DataError
from defectlens.inference.artifact import MANIFEST
from defectlens.post.prediction import Calibration, Prediction, ScoredBatch
from defectlens.post.tasks import Box, Regions, check_task, regions
from defectlens.reports.figures import overlay, save_image

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
PICTURES = ("overlay", "mask")
OUTPUTS = ("jsonl", *PICTURES)


@runtime_checkable
class Scorer(Protocol):
    """What predicting and serving need: a fitted `Detector` and an exported model's `Inferencer` both
    are one, with the same attributes and the same stream of (names, `Prediction`)."""

    name: str
    runtime: str
    calibration: Calibration
    input_resize: Resize
    batch_size: int

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
    outputs: Sequence[str] = OUTPUTS,
    workers: int = 2,
) -> Path:
    """Write one JSON line per image to `out/predictions.jsonl`, plus overlay and mask PNGs.

    Each line holds `path`, `score` (normalised, threshold at 0.5), `label` (normal/anomalous),
    `raw_score` and `task`; detection adds `boxes` ([x0, y0, x1, y1, score] in original image pixels,
    x1/y1 exclusive); `overlay` and `mask` (segmentation) name the PNGs when `outputs` asks for them.
    A file that cannot be read or scored gets a line with `path` and `error`, and the others go on.

    Images are decoded `workers` at a time ahead of the model, and the pictures written by `workers`
    threads behind it (decoding and PNG encoding release the GIL), so the model is seldom kept waiting.

    Args:
        model: a run folder, an exported model folder, a fitted `Detector` or an `Inferencer`.
        outputs: what to write: "jsonl" (always), "overlay", "mask".

    Returns:
        The path of predictions.jsonl.
    """
    task = check_task(task)
    pictures = check_outputs(outputs)
    scorer = open_scorer(model) if isinstance(model, str | Path) else model
    paths = [record.path for record in records_from_paths(inputs, check_files=False)]
    out = prepare_output(Path(out), force, "prediction folder")
    writer = PictureWriter(out, pictures, workers)
    stream: Iterator[Decoded] = decode_ahead(paths, workers)
    if progress:
        from tqdm.auto import tqdm

        stream = tqdm(stream, total=len(paths), desc="predict", unit="image", leave=False)
    try:
        with (out / PREDICTIONS).open("w") as lines:
            for chunk in _chunks(stream, scorer.batch_size):
                readable = [item for item in chunk if item.error is None]
                scored = iter(score_images(scorer.predict, readable, task, min_area))
                for item in chunk:
                    if item.error is not None:
                        entry = {"path": item.name, "error": item.error}
                    else:
                        entry, heat, found = next(scored)
                        if heat is not None:
                            entry = writer.add(entry, item.image, heat, found)
                    lines.write(json.dumps(entry) + "\n")
    finally:
        writer.close()
    return out / PREDICTIONS


def check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    """The pictures asked for in `outputs` (predictions.jsonl is always written).

    Raises:
        ConfigError: an unknown output.
    """
    chosen = [output.strip() for output in outputs if output.strip()]
    unknown = sorted(set(chosen) - set(OUTPUTS))
    if unknown:
        raise ConfigError(f"unknown outputs {unknown}: choose from {list(OUTPUTS)}")
    return tuple(output for output in PICTURES if output in chosen)


def _chunks(stream: Iterator[Decoded], size: int) -> Iterator[list[Decoded]]:
    chunk: list[Decoded] = []
    for item in stream:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Decoded:
    """One input: its decoded RGB image, or why it cannot be read."""

    name: str
    image: np.ndarray | None
    read_ms: float = 0.0
    error: str | None = None


def read_decoded(path: str | Path) -> Decoded:
    """`path` decoded, timed; a file that cannot be read gives its error instead of raising."""
    start = time.perf_counter()
    try:
        image = read_image(path)
    except DataError as error:
        return Decoded(str(path), None, error=str(error))
    return Decoded(str(path), image, 1000 * (time.perf_counter() - start))


def decode_ahead(paths: Sequence[str | Path], workers: int = 2, lookahead: int = 32) -> Iterator[Decoded]:
    """The images of `paths` in order, decoded by `workers` threads up to `lookahead` ahead."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Decoded]] = deque()
        for path in paths:
            pending.append(pool.submit(read_decoded, path))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def score_images(
    predict: Callable[[list[np.ndarray]], Prediction], items: Sequence[Decoded], task: str, min_area: int = 16
) -> list[tuple[dict[str, Any], np.ndarray | None, Regions | None]]:
    """(entry, heatmap, regions) of each item from one call of `predict` (a `Scorer`'s), as `describe`
    gives them.

    When the call fails, each image is scored alone, so that only the one at fault becomes an error
    entry (`{"path", "error"}`, heatmap and regions None) and the rest are scored.
    """
    if not items:
        return []
    try:
        prediction = predict([item.image for item in items])
    except Exception as error:  # one image the model cannot take must not lose the others
        if len(items) > 1:
            return [scored for item in items for scored in score_images(predict, [item], task, min_area)]
        return [({"path": items[0].name, "error": f"cannot score {items[0].name}: {error}"}, None, None)]
    return [describe(item.name, prediction, i, task, min_area) for i, item in enumerate(items)]


class PictureWriter:
    """Writes each scored image's overlay (and mask, for segmentation) under `out` from a thread pool.

    Names are the image's stem, made unique among the pictures already there, so nothing is
    overwritten. `close` waits for every picture and raises the first error.

    Args:
        out: the output folder.
        pictures: "overlay" and/or "mask" (see `check_outputs`).
        workers: writing threads; at most 4 x `workers` pictures wait at a time.
    """

    def __init__(self, out: Path, pictures: Sequence[str] = PICTURES, workers: int = 2) -> None:
        self.out, self.pictures = out, tuple(pictures)
        self._used = {p.stem for sub in ("overlays", "masks") for p in (out / sub).glob("*.png")}
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="pictures") if self.pictures else None
        self._pending: deque[Future[None]] = deque()
        self._limit = 4 * workers

    def add(
        self, entry: dict[str, Any], image: np.ndarray, heat: np.ndarray, found: Regions
    ) -> dict[str, Any]:
        """`entry` with the relative paths of its pictures, which are written in the background."""
        if self._pool is None:
            return entry
        name = unique_stem(Path(entry["path"]), self._used)
        mask, boxes = drawn(found, entry["task"])
        files: dict[str, str] = {}
        if "mask" in self.pictures and mask is not None:
            files["mask"] = f"masks/{name}.png"
        if "overlay" in self.pictures:
            files["overlay"] = f"overlays/{name}.png"
        while len(self._pending) >= self._limit:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._save, files, image, heat, mask, boxes))
        return {**entry, **files}

    def _save(
        self, files: dict[str, str], image: np.ndarray, heat: np.ndarray, mask: Any, boxes: Any
    ) -> None:
        if "mask" in files:
            save_image(mask, self.out / files["mask"])
        if "overlay" in files:
            save_image(overlay(image, heat, pred_mask=mask, boxes=boxes), self.out / files["overlay"])

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            if self._pool is not None:
                self._pool.shutdown()


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
