"""`defectlens predict` end to end against its model alone, on the MTD test images, in one process.

    python benchmarks/predict_path.py --run /tmp/mtd-padim --export /tmp/mtd-padim-onnx \\
        --data ../shared/data/mtd/magnetic_tile --out docs/raw/predict_path.jsonl

For each model (a run folder, served by torch, and an export, by its runtime): the model alone on the
images already decoded and resized, in batches of the model's batch size; then `predict_images` over the
same files with predictions.jsonl only and with the default outputs (overlay and mask PNGs), the way
`defectlens predict` runs. Runs are interleaved (model, jsonl, default, model, ...) --repeats times; the
table gives the best of each. Prints a markdown table and appends one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from defectlens.data import load_mvtec, read_image
from defectlens.engine.predict import open_scorer, predict_images


def model_alone(scorer, images: list[np.ndarray]) -> float:
    """Images per second of the model on decoded images: resize, model, calibration."""
    batches = [images[i : i + scorer.batch_size] for i in range(0, len(images), scorer.batch_size)]
    start = time.perf_counter()
    for batch in batches:
        scorer.predict(batch)
    return len(images) / (time.perf_counter() - start)


def end_to_end(scorer, folders: list[Path], n_images: int, outputs: list[str], threads: int) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        predict_images(
            scorer, folders, Path(scratch) / "out", outputs=outputs, workers=threads, progress=False
        )
        return n_images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, action="append", default=[], help="run folder (torch)")
    parser.add_argument("--export", type=Path, action="append", default=[], help="exported model folder")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout folder, e.g. MTD")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="predict's decoding and writing threads")
    parser.add_argument("--out", type=Path, default=Path("docs/raw/predict_path.jsonl"))
    args = parser.parse_args()
    test = load_mvtec(args.data).test
    folders = sorted({record.path.parent for record in test})
    images = [read_image(record.path) for record in test]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {len(images)} images of {args.data}")
    print("| model | runtime | model alone img/s | predict, jsonl | share | predict, default outputs |")
    print("|---|---|---|---|---|---|")
    for path in [*args.run, *args.export]:
        scorer = open_scorer(path)
        scorer.predict(images[: scorer.batch_size])  # warm-up: first calls pay for allocation
        best = {"model": 0.0, "jsonl": 0.0, "default": 0.0}
        for _ in range(args.repeats):
            best["model"] = max(best["model"], model_alone(scorer, images))
            best["jsonl"] = max(
                best["jsonl"], end_to_end(scorer, folders, len(images), ["jsonl"], args.threads)
            )
            default = end_to_end(scorer, folders, len(images), ["jsonl", "overlay", "mask"], args.threads)
            best["default"] = max(best["default"], default)
        row = {
            "model": scorer.name,
            "runtime": scorer.runtime,
            "source": str(path),
            "images": len(images),
            "threads": args.threads,
            **{f"{key}_images_per_second": round(value, 2) for key, value in best.items()},
            "jsonl_share_of_model": round(best["jsonl"] / best["model"], 3),
            "machine": platform.machine(),
            "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
        }
        print(
            f"| {row['model']} | {row['runtime']} | {best['model']:.1f} | {best['jsonl']:.1f} | "
            f"{row['jsonl_share_of_model']:.0%} | {best['default']:.1f} |"
        )
        with args.out.open("a") as lines:
            lines.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
