"""Torch vs TorchScript vs ONNX Runtime vs OpenVINO: speed and agreement of exported detectors.

For each saved detector (a run's model.pt, or the files `benchmarks/run.py --save-models` keeps) this
exports ONNX, OpenVINO IR and TorchScript, then times each runtime on the same preloaded, resized real
test images (decoding and resizing excluded, as in anomalib's figures):

- throughput: images/s over all images in batches of `--batch-size`, after one warm-up batch;
- latency: median milliseconds for one image alone (batch 1) over `--latency-images` images;
- agreement with torch: max |difference| of normalised scores (threshold at 0.5) and the share of
  pixels whose segmentation label differs;
- with `--precisions fp16 int8`: FP16 and INT8 exports for ONNX Runtime and OpenVINO too, calibrated on
  the good training images and checked by the exporter on all test images: their image AUROC beside the
  float32 model's (an export that moves it by more than 0.005 is refused, and its row says so).

    python benchmarks/export.py runs/bench/magnetic_tile-padim.pt --data ../shared/data/mtd/magnetic_tile \
        --precisions fp32 fp16 int8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine

from defectlens.data import load_mvtec
from defectlens.data.inputs import as_dataset, loader
from defectlens.errors import DefectlensError
from defectlens.export import export_detector
from defectlens.inference import Inferencer, Manifest
from defectlens.models import load

RUNTIMES = (
    ("torch", None, None),
    ("torchscript", "torchscript", "torchscript"),
    ("onnxruntime", "onnx", "onnxruntime"),
    ("openvino", "openvino", "openvino"),
)


def time_runtime(score, batches: list[np.ndarray], singles: list[np.ndarray]) -> tuple[float, float]:
    score(batches[0])  # warm-up: lazy allocations, kernel selection
    start = time.perf_counter()
    for batch in batches:
        score(batch)
    throughput = sum(len(b) for b in batches) / (time.perf_counter() - start)
    latencies = []
    for image in singles:
        tic = time.perf_counter()
        score(image)
        latencies.append((time.perf_counter() - tic) * 1000)
    return throughput, statistics.median(latencies)


def benchmark(
    checkpoint: Path,
    data: Path,
    n_images: int,
    batch_size: int,
    n_latency: int,
    threads: int,
    precisions: list[str],
):
    detector = load(checkpoint)
    detector.device = "cpu"
    splits = load_mvtec(data)
    test = splits.test[:n_images]
    images = [b.images.numpy() for b in loader(as_dataset(test, detector.input_resize), batch_size)]
    singles = [image[None] for image in np.concatenate(images)[:n_latency]]
    reference = None
    rows = []
    jobs = [(name, fmt, backend, "fp32") for name, fmt, backend in RUNTIMES]
    jobs += [
        (name, fmt, backend, precision)
        for precision in precisions
        if precision != "fp32"
        for name, fmt, backend in RUNTIMES
        if fmt in ("onnx", "openvino")
    ]
    with tempfile.TemporaryDirectory() as folder:
        for name, fmt, backend, precision in jobs:
            check = {}
            if fmt is None:

                def score(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                    return detector.score_batch(torch.from_numpy(x))

                export_seconds, size_mb = None, None
            else:
                start = time.perf_counter()
                try:
                    out = export_detector(
                        detector,
                        Path(folder) / f"{fmt}-{precision}",
                        fmt,
                        precision=precision,
                        calibration=splits.train + splits.val,
                        check=splits.test,
                    )
                except DefectlensError as error:  # a refused export is a result too
                    print(f"| {detector.name} | {name} | {precision} | refused: {error} |", flush=True)
                    continue
                export_seconds = round(time.perf_counter() - start, 1)
                size_mb = round(sum(f.stat().st_size for f in out.iterdir()) / 1e6, 1)
                check = Manifest.load(out).check
                score = Inferencer(out, backend=backend, threads=threads).score_batch
            throughput, latency = time_runtime(score, images, singles)
            raw = [score(batch) for batch in images]
            prediction = detector.calibration.apply(
                np.concatenate([s for s, _ in raw]), np.concatenate([m for _, m in raw]), []
            )
            if reference is None:
                reference = prediction
            rows.append(
                {
                    "checkpoint": checkpoint.name,
                    "model": detector.name,
                    "runtime": name,
                    "precision": precision,
                    "images": len(test),
                    "img_s": round(throughput, 2),
                    "latency_ms": round(latency, 1),
                    "max_score_diff": float(np.abs(prediction.score - reference.score).max()),
                    "mask_disagreement": float((prediction.mask != reference.mask).mean()),
                    "image_auroc_fp32": check.get("image_auroc_fp32"),
                    "image_auroc": check.get("image_auroc"),
                    "check_images": check.get("images"),
                    "export_s": export_seconds,
                    "artefact_mb": size_mb,
                    "threads": threads,
                }
            )
            print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    auroc = "–" if r["image_auroc"] is None else f"{r['image_auroc']:.4f} ({r['image_auroc_fp32']:.4f})"
    cells = [
        r["model"],
        r["runtime"],
        r["precision"],
        f"{r['img_s']:.1f}",
        f"{r['latency_ms']:.0f}",
        f"{r['max_score_diff']:.1e}",
        f"{r['mask_disagreement']:.1e}",
        auroc,
        "–" if r["export_s"] is None else str(r["export_s"]),
        "–" if r["artefact_mb"] is None else str(r["artefact_mb"]),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path, help="model.pt files of fitted detectors")
    parser.add_argument(
        "--data", type=Path, required=True, help="MVTec-layout category: its test images are used"
    )
    parser.add_argument("--images", type=int, default=96, help="test images to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latency-images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "fp16", "int8"],
        help="export precisions to time (fp16/int8: ONNX Runtime and OpenVINO, checked on all test images)",
    )
    parser.add_argument("--out", type=Path, help="append one JSON line per result to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine()}, threads {args.threads}, batch {args.batch_size}\n")
    header = ["model", "runtime", "precision", "img/s", "latency ms (batch 1)", "max score diff"]
    header += ["mask disagreement", "image AUROC (fp32)", "export s", "MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for checkpoint in args.checkpoints:
        for row in benchmark(
            checkpoint,
            args.data,
            args.images,
            args.batch_size,
            args.latency_images,
            args.threads,
            args.precisions,
        ):
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
