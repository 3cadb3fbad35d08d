"""Batch scoring of very many images on Ray: shards of Parquet, resumable, nothing lost or duplicated.

The input list is cut into fixed shards. Each shard runs as a Ray Data pipeline whose workers are actors
holding one copy of the model each (loaded once per actor and shard); only paths travel, every worker
reads its images from disk. The driver writes each finished shard atomically (temporary file, then
rename) and records it in `manifest.json`, so a re-run skips finished shards, and a shard is written
exactly once. Ray restarts a worker that dies and retries its batches; an image that cannot be read
becomes a row with its `error`, not a failed job.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.data.io import IMAGE_SUFFIXES, list_images
from defectlens.engine.predict import describe, open_scorer
from defectlens.engine.runs import prepare_output, write_json
from defectlens.errors import CheckpointError, ConfigError, DataError, DefectlensError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHARDS = "shards"
LIST_SUFFIXES = (".txt", ".csv", ".lst")


def list_inputs(inputs: Sequence[str | Path]) -> list[str]:
    """Image paths from folders, glob patterns, single files, and list files (.txt/.csv/.lst: one path
    per line, or a CSV whose `path` column (else first column) holds them). Order kept, duplicates dropped.

    Raises:
        DataError: an input matches nothing.
    """
    paths: list[str] = []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            found = [str(p) for p in list_images(path)]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found = _read_list(path)
        elif path.is_file():
            found = [text]
        else:
            found = sorted(
                p for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES
            )
        if not found:
            raise DataError(
                f"input {text} matches no images (a folder, a glob, an image, or a .txt/.csv list)"
            )
        paths += found
    return list(dict.fromkeys(paths))


def _read_list(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        if path.suffix.lower() != ".csv":
            return [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        rows = list(csv.reader(handle))
    if not rows:
        return []
    column = rows[0].index("path") if "path" in rows[0] else 0
    start = 1 if "path" in rows[0] else 0
    return [row[column] for row in rows[start:] if len(row) > column and row[column].strip()]


class ScoreWorker:
    """A Ray actor: opens the model once, then scores batches of paths into prediction rows."""

    def __init__(
        self, model: str, backend: str = "auto", threads: int = 1, task: str = "classification"
    ) -> None:
        self.scorer = open_scorer(
            model, backend, threads=threads
        )  # one thread per worker: no oversubscription
        self.task = task

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        paths = [str(path) for path in batch["path"]]
        try:
            rows = self._score(paths)  # one model call for the whole batch
        except DefectlensError:  # an unreadable image: score one by one so only it becomes an error row
            rows = [row for path in paths for row in self._score_or_error(path)]
        return {
            key: [row[key] for row in rows]
            for key in ("path", "score", "label", "raw_score", "boxes", "error")
        }

    def _score(self, paths: list[str]) -> list[dict[str, Any]]:
        rows = []
        for prediction in (b.prediction for b in self.scorer.iter_predict(paths, batch_size=len(paths))):
            for i in range(len(prediction.score)):
                entry, *_ = describe(paths[len(rows)], prediction, i, self.task)
                boxes = json.dumps(entry["boxes"]) if "boxes" in entry else None
                rows.append(
                    {
                        **{k: entry[k] for k in ("path", "score", "label", "raw_score")},
                        "boxes": boxes,
                        "error": None,
                    }
                )
        return rows

    def _score_or_error(self, path: str) -> list[dict[str, Any]]:
        try:
            return self._score([path])
        except DefectlensError as error:
            return [
                {
                    "path": path,
                    "score": None,
                    "label": None,
                    "raw_score": None,
                    "boxes": None,
                    "error": str(error),
                }
            ]


def predict_on_ray(
    model: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    workers: int = 2,
    address: str | None = None,
    shard_size: int = 10_000,
    batch_size: int = 16,
    task: str = "classification",
    backend: str = "auto",
    force: bool = False,
    worker_class: type = ScoreWorker,
) -> dict[str, Any]:
    """Score `inputs` with the model in `model` (run or export folder) on Ray; write Parquet shards.

    Args:
        workers: model copies (Ray actors), one CPU each.
        address: an existing Ray cluster ("ray://host:10001" or "auto"); None starts a local Ray.
        shard_size: images per output file; the unit of resumption.
        worker_class: the actor class (tests inject failures through it).

    Returns:
        The manifest written to `out/manifest.json`.

    Raises:
        ConfigError: bad settings, or `out` holds another job's results (without `force`).
    """
    import ray

    if workers < 1 or shard_size < 1 or batch_size < 1:
        raise ConfigError(
            f"workers, shard_size and batch_size must be >= 1, got {workers}, {shard_size}, {batch_size}"
        )
    paths = list_inputs(inputs)
    out = Path(out)
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    manifest = _open_manifest(out, model, digest, len(paths), shard_size, force)
    todo = [
        i for i in range(0, len(paths), shard_size) if _shard_name(i // shard_size) not in manifest["shards"]
    ]
    logger.info("%d images, %d shards, %d to do", len(paths), -(-len(paths) // shard_size), len(todo))
    if todo and not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    for start in todo:
        index = start // shard_size
        tic = time.perf_counter()
        rows = _score_shard(
            ray,
            worker_class,
            str(model),
            paths[start : start + shard_size],
            workers,
            batch_size,
            task,
            backend,
        )
        _write_shard(out, index, rows, manifest, time.perf_counter() - tic)
    manifest["complete"] = sum(s["rows"] for s in manifest["shards"].values()) == len(paths)
    write_json(out / MANIFEST, manifest)
    return manifest


def _score_shard(
    ray: Any,
    worker_class: type,
    model: str,
    paths: list[str],
    workers: int,
    batch_size: int,
    task: str,
    backend: str,
) -> Any:
    import pyarrow as pa

    dataset = ray.data.from_items(
        [{"path": p} for p in paths], override_num_blocks=max(1, min(len(paths) // batch_size, 4 * workers))
    )
    scored = dataset.map_batches(
        worker_class,
        fn_constructor_kwargs={"model": model, "backend": backend, "threads": 1, "task": task},
        concurrency=workers,
        batch_size=batch_size,
        num_cpus=1,
        max_restarts=-1,  # a dead worker comes back ...
        max_task_retries=-1,  # ... and its batches run again
    )
    table = pa.Table.from_pylist(scored.take_all())
    missing = set(paths) - set(table.column("path").to_pylist())
    if missing or table.num_rows != len(paths):
        raise DefectlensError(
            f"a shard came back with {table.num_rows} rows for {len(paths)} images; it was not written"
        )
    order = {p: i for i, p in enumerate(paths)}
    return table.take(np.argsort([order[p] for p in table.column("path").to_pylist()]))


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def _open_manifest(
    out: Path, model: str | Path, digest: str, n: int, shard_size: int, force: bool
) -> dict[str, Any]:
    path = out / MANIFEST
    if path.is_file() and not force:
        try:
            manifest = json.loads(path.read_text())
        except ValueError as error:
            raise CheckpointError(f"cannot read {path}: {error}; pass --force to start over") from error
        if (manifest.get("inputs_sha256"), manifest.get("shard_size")) != (digest, shard_size):
            raise ConfigError(
                f"{out} holds results for another input list or shard size; pass --force to start over"
            )
        logger.info("resuming: %d shards already done in %s", len(manifest["shards"]), out)
        return manifest
    prepare_output(out, force, "batch output folder")
    (out / SHARDS).mkdir()
    return {
        "model": str(Path(model).resolve()),
        "images": n,
        "shard_size": shard_size,
        "inputs_sha256": digest,
        "shards": {},
        "complete": False,
    }


def _write_shard(out: Path, index: int, table: Any, manifest: dict[str, Any], seconds: float) -> None:
    import pyarrow.parquet as pq

    name = _shard_name(index)
    temporary = out / SHARDS / (name + ".tmp")
    pq.write_table(table, temporary)
    temporary.replace(out / SHARDS / name)
    errors = sum(e is not None for e in table.column("error").to_pylist())
    manifest["shards"][name] = {"rows": table.num_rows, "errors": errors, "seconds": round(seconds, 2)}
    write_json(out / MANIFEST, manifest)  # after the rename: a listed shard is always complete
