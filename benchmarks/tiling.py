"""When tiling pays: detectors at 256 px, whole at 512, and tiled at working resolutions 512 and 1024, on
MVTec screw and MTD.

    python benchmarks/tiling.py --out docs/raw/tiling                     # the whole grid, resumable
    python benchmarks/tiling.py --out docs/raw/tiling --only screw:patchcore:tiles-1024
    python benchmarks/tiling.py --out docs/raw/tiling --rows-only         # rebuild results.md

Each configuration runs in its own process (so that its peak RSS is its own) through the same path as the
CLI: `engine.train` (with the default out-of-fold or held-out calibration), then `engine.evaluate_run`
with the report (its wall time is what `defectlens test` costs), then the model alone on batches of
resized test images, then `predict_images` (decode, model, post-processing and the overlay and mask PNGs
of every image). The report picture of the test image with the smallest defect goes to OUT/figures/. Each
finished configuration appends a row to OUT/results.jsonl; OUT/results.md is
rebuilt from all rows (a later row replaces an earlier one of the same configuration).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = {"screw": "../shared/data/mvtec_screw", "mtd": "../shared/data/mtd/magnetic_tile"}
MODELS = ("patchcore", "padim", "stfpm")
SETTINGS = {
    "resize-256": {},
    "whole-512": {"image_size": 512},
    "tiles-512": {"image_size": 512, "tile_size": 256},
    "tiles-1024": {"image_size": 1024, "tile_size": 256},
}
# MTD's tiles are 103-632 px: working at 1024 would upsample every one of them 2-10x.
GRID = [
    (data, model, setting)
    for data in DATASETS
    for model in MODELS
    for setting in SETTINGS
    if not (data == "mtd" and setting in ("tiles-1024", "whole-512"))
]
MODEL_BATCHES = 4  # batches of the model-alone timing
PREDICT_IMAGES = 64  # images of the end-to-end timing


def smallest_defect(test: list) -> object:
    """The defective test record with the smallest ground-truth area (ties: the first)."""
    from defectlens.data import read_mask

    masked = [r for r in test if r.label == 1 and r.mask_path is not None]
    return min(masked, key=lambda r: int(read_mask(r.mask_path).sum()) or 10**12)


def run_one(data: str, model: str, setting: str, extra: dict, figures: Path) -> dict:
    import numpy as np
    import torch

    from defectlens.data.inputs import as_dataset, loader
    from defectlens.engine.predict import predict_images
    from defectlens.engine.runs import DataSpec
    from defectlens.engine.test import evaluate_run
    from defectlens.engine.train import train
    from defectlens.models import load

    torch.set_num_threads(2)
    params = {**SETTINGS[setting], "device": "cpu", **extra}
    spec = DataSpec.mvtec(Path(DATASETS[data]))
    with tempfile.TemporaryDirectory() as work:
        result = train(model, spec, Path(work) / "run", params, progress=False)
        start = time.perf_counter()
        metrics = evaluate_run(result.run, progress=False)
        test_seconds = time.perf_counter() - start
        detector = load(result.run / "model.pt")
        test = result.splits.test
        small = smallest_defect(test)
        figures.mkdir(parents=True, exist_ok=True)
        for picture in (result.run / "report" / "images" / small.defect_type).glob(f"{small.path.stem}*.png"):
            suffix = picture.name[picture.name.index(".") :]  # ".png" or ".box1.png"
            shutil.copy(picture, figures / f"{data}-{model}-{setting}{suffix}")
        batches = iter(loader(as_dataset(test, detector.input_resize), detector.batch_size))
        images = [next(batches).images for _ in range(MODEL_BATCHES + 1)]
        detector.score_batch(images[0])  # warm-up
        start = time.perf_counter()
        for batch in images[1:]:
            detector.score_batch(batch)
        model_rate = sum(len(b) for b in images[1:]) / (time.perf_counter() - start)
        chosen = [r.path for r in np.array(test, dtype=object)[:: max(1, len(test) // PREDICT_IMAGES)]]
        start = time.perf_counter()
        predict_images(detector, chosen, Path(work) / "predicted", progress=False)
        end_to_end = len(chosen) / (time.perf_counter() - start)
    return {
        "data": data,
        "model": model,
        "setting": setting,
        "params": params,
        "image_auroc": round(metrics["image_auroc"], 4),
        "pixel_auroc": round(metrics.get("pixel_auroc", float("nan")), 4),
        "aupro": round(metrics.get("aupro", float("nan")), 4),
        "per_defect_type_auroc": metrics["per_defect_type_auroc"],
        "fit_seconds": result.info.fit_seconds,
        "test_seconds": round(test_seconds, 1),
        "model_images_per_second": round(model_rate, 2),
        "end_to_end_images_per_second": round(end_to_end, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "tiles_per_image": len(detector.module_.layout) if detector.tile_size else 1,
        "memory_bank_rows": int(len(detector.tile_module_.memory_bank))
        if hasattr(detector.tile_module_, "memory_bank")
        else None,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        f"Machine: {platform.machine()} {platform.processor() or 'CPU'}, 2 threads, "
        f"python {platform.python_version()}.",
        "",
        "| data | model | setting | image AUROC | pixel AUROC | AUPRO | fit s | test s (with report) "
        "| model img/s | end-to-end img/s | peak RSS GB | tiles | bank rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['model']} | {r['setting']}{_extra(r)} | {r['image_auroc']:.4f} "
            f"| {r['pixel_auroc']:.4f} | {r['aupro']:.4f} | {r['fit_seconds']} | {r['test_seconds']} "
            f"| {r['model_images_per_second']} | {r['end_to_end_images_per_second']} | {r['peak_rss_gb']} "
            f"| {r['tiles_per_image']} | {r['memory_bank_rows'] or ''} |"
        )
    lines += ["", "Image AUROC per defect type:", ""]
    for r in rows:
        label = f"{r['data']} / {r['model']} / {r['setting']}{_extra(r)}"
        lines.append(f"- {label}: {json.dumps(r['per_defect_type_auroc'])}")
    return "\n".join(lines) + "\n"


def _extra(row: dict) -> str:
    extra = {k: v for k, v in row["params"].items() if k not in {*SETTINGS[row["setting"]], "device"}}
    return f" ({', '.join(f'{k}={v}' for k, v in sorted(extra.items()))})" if extra else ""


def _key(row: dict) -> tuple:
    return (row["data"], row["model"], row["setting"], json.dumps(row["params"], sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/raw/tiling"))
    parser.add_argument("--only", nargs="*", help="DATA:MODEL:SETTING configurations to run")
    parser.add_argument("--set", default="{}", help="JSON of extra model settings for the chosen runs")
    parser.add_argument("--rows-only", action="store_true", help="only rebuild results.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # DATA:MODEL:SETTING, run in this process
    args = parser.parse_args()
    extra = json.loads(args.set)
    if args.one:
        print(json.dumps(run_one(*args.one.split(":"), extra, args.out / "figures")))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows_file = args.out / "results.jsonl"
    if not args.rows_only:
        done = {_key(r) for r in _rows(rows_file)}
        chosen = [tuple(c.split(":")) for c in args.only] if args.only else GRID
        for data, model, setting in chosen:
            params = {**SETTINGS[setting], "device": "cpu", **extra}
            if not args.only and (data, model, setting, json.dumps(params, sort_keys=True)) in done:
                continue
            if not Path(DATASETS[data]).is_dir():
                print(f"skipping {data}: {DATASETS[data]} not found (see ../shared/data/README.md)")
                continue
            one = ["--one", f"{data}:{model}:{setting}", "--set", args.set, "--out", str(args.out)]
            command = [sys.executable, __file__, *one]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            with rows_file.open("a") as f:
                f.write(json.dumps(row) + "\n")
    latest = {_key(r): r for r in _rows(rows_file)}
    (args.out / "results.md").write_text(markdown(list(latest.values())))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


if __name__ == "__main__":
    main()
