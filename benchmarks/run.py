"""Benchmark detectors on MVTec-layout categories and on ELPV; print a markdown table.

Each (model, dataset, setting) runs in a fresh subprocess so that its peak memory is its own.

    python benchmarks/run.py --models patchcore padim --data-root ../shared/data/mtd
    python benchmarks/run.py --models padim --elpv mono poly --set resize=pad

Columns: image AUROC, pixel AUROC, AUPRO (FPR <= 0.3), image F1 at the best threshold, fit seconds,
images/s of the model on preloaded 256 px batches (as anomalib's figures are measured), images/s end to
end (JPEG decoding, resizing, model and post-processing), peak RSS after fit + predict and for the
whole process including the metrics, and the fitted model's complexity measured on the module:
parameters, size of its state on disk (MB) and GFLOPs per image (`defectlens info`).
`--save-models DIR` keeps each fitted detector as DIR/<data>-<model>.pt (for benchmarks/export.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import describe_machine


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(job: dict) -> dict:
    """Fit, predict and evaluate one configuration in this process."""
    import torch

    from defectlens.data import load_elpv, load_mvtec
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.engine import score_records
    from defectlens.models import create
    from defectlens.models.complexity import measure

    torch.set_num_threads(job["threads"])
    if job["kind"] == "mvtec":
        splits = load_mvtec(job["path"], seed=job["seed"])
    else:
        splits = load_elpv(job["path"], seed=job["seed"])
    detector = create(job["model"], seed=job["seed"], device="cpu", **job["params"])
    start = time.perf_counter()
    detector.fit(splits)
    fit_seconds = time.perf_counter() - start
    if job.get("save_models"):
        detector.save(Path(job["save_models"]) / f"{job['name']}-{job['model']}.pt", force=True)

    # Model-only throughput on preloaded batches (decoding excluded), after one warm-up batch.
    preload = [
        b.images for b in loader(as_dataset(splits.test[:96], detector.input_resize), detector.batch_size)
    ]
    detector.score_batch(preload[0])
    start = time.perf_counter()
    for images in preload:
        detector.score_batch(images)
    model_ips = sum(len(b) for b in preload) / (time.perf_counter() - start)
    del preload

    start = time.perf_counter()
    scored = score_records(detector, splits.test)
    end_to_end_ips = len(splits.test) / (time.perf_counter() - start)
    rss_model = peak_rss_mb()
    result = scored.evaluate(detector.calibration.image_threshold)
    complexity = measure(detector.module_, detector.input_resize.size)
    return {
        **job,
        "image_auroc": result["image_auroc"],
        "pixel_auroc": result["pixel_auroc"],
        "aupro": result["aupro"],
        "f1_max": result["image_f1_max"],
        "fit_s": round(fit_seconds, 1),
        "model_img_s": round(model_ips, 2),
        "end_to_end_img_s": round(end_to_end_ips, 2),
        "peak_rss_fit_predict_mb": round(rss_model),
        "peak_rss_total_mb": round(peak_rss_mb()),
        "n_train": len(splits.train),
        "n_test": len(splits.test),
        "memory_bank": getattr(detector.module_, "memory_bank", torch.empty(0)).shape[0] or None,
        "parameters": complexity.parameters,
        "size_mb": complexity.size_mb,
        "gflops": complexity.gflops,
        # Per-epoch losses of models trained for epochs: where early stopping ended and which epoch was kept.
        "history": getattr(detector, "history_", None),
    }


def fmt(value: object) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) and value <= 1 else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["patchcore", "padim"])
    parser.add_argument("--data-root", type=Path, help="folder whose subfolders are MVTec-layout categories")
    parser.add_argument("--categories", nargs="*", help="subset of categories under --data-root")
    parser.add_argument("--elpv", nargs="*", default=[], help="ELPV cell types to add: mono poly both")
    parser.add_argument("--set", nargs="*", default=[], help="model settings key=value (JSON values)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="append one JSON line per result to this file")
    parser.add_argument("--save-models", type=Path, help="keep each fitted detector in this folder")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_one(json.loads(args.job))))
        return

    params = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    datasets = []
    if args.data_root:
        names = args.categories or sorted(p.name for p in args.data_root.iterdir() if (p / "train").is_dir())
        datasets += [("mvtec", str(args.data_root / name), name) for name in names]
    datasets += [("elpv", cell, f"elpv-{cell}") for cell in args.elpv]
    if not datasets:
        parser.error("give --data-root and/or --elpv")

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    print(f"machine: {describe_machine()}, threads {args.threads}")
    print(f"settings: {json.dumps(params) or 'defaults'}\n")
    columns = [
        "data",
        "model",
        "image AUROC",
        "pixel AUROC",
        "AUPRO",
        "F1 max",
        "fit s",
        "model img/s",
        "end-to-end img/s",
        "peak RSS fit+predict MB",
        "peak RSS total MB",
        "params",
        "size MB",
        "GFLOPs",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for kind, path, name in datasets:
        for model in args.models:
            job = {
                "kind": kind,
                "path": path,
                "name": name,
                "model": model,
                "params": params,
                "threads": args.threads,
                "seed": args.seed,
                "save_models": str(args.save_models.resolve()) if args.save_models else None,
            }
            done = subprocess.run(
                [sys.executable, __file__, "--job", json.dumps(job)], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                print(f"| {name} | {model} | failed: {done.stderr.strip().splitlines()[-1]} |")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            cells = [
                row["image_auroc"],
                row["pixel_auroc"],
                row["aupro"],
                row["f1_max"],
                row["fit_s"],
                row["model_img_s"],
                row["end_to_end_img_s"],
                row["peak_rss_fit_predict_mb"],
                row["peak_rss_total_mb"],
                f"{row['parameters']:,}",
                row["size_mb"],
                row["gflops"],
            ]
            print(f"| {name} | {model} | " + " | ".join(fmt(c) for c in cells) + " |", flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
