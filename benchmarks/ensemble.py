"""PatchCore on several backbones: one model on their concatenated features, against one model per backbone
whose calibrated scores and maps are averaged.

    python benchmarks/ensemble.py --data ../shared/data/mtd/magnetic_tile --out docs/raw/ensemble_mtd.jsonl

Each backbone alone, the late fusion of those models, and the concatenation (`backbone=[...]`) are fitted on
the same split with the same settings, and scored on every test image. Late fusion averages each model's
normalised outputs (`Prediction.score` and `.anomaly_map`, where each model's own calibrated threshold sits
at 0.5), so no model dominates by its scale. Prints a markdown table and appends one JSON line per row to
--out. Timings: fit seconds, and images/s of predicting the test set from decoded batches (the fused row
adds its members' times).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from defectlens import metrics
from defectlens.data import load_mvtec
from defectlens.data.inputs import as_dataset, loader
from defectlens.models import create

LITE = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def outputs(detector, test) -> dict:
    """Normalised and raw image scores, and content-cropped normalised and raw maps of every test image."""
    rows: dict = {"score": [], "raw_score": [], "map": [], "raw_map": [], "mask": [], "label": []}
    seconds = 0.0
    for batch in loader(as_dataset(test, detector.input_resize), detector.batch_size):
        start = time.perf_counter()
        prediction = detector.calibration.apply(*detector.score_batch(batch.images), batch.geometries)
        seconds += time.perf_counter() - start
        rows["score"].append(prediction.score)
        rows["raw_score"].append(prediction.raw_score)
        rows["label"].append(batch.labels.numpy())
        for i, geometry in enumerate(prediction.geometries):
            rows["map"].append(geometry.crop_content(prediction.anomaly_map[i]))
            rows["raw_map"].append(geometry.crop_content(prediction.raw_map[i]))
            mask = batch.masks[i]
            rows["mask"].append(geometry.crop_content(mask.numpy()) if mask is not None else None)
    for key in ("score", "raw_score", "label"):
        rows[key] = np.concatenate(rows[key])
    rows["seconds"] = seconds
    return rows


def evaluate(labels, scores, masks, maps) -> dict:
    result = metrics.evaluate(labels, scores, float(np.median(scores)), masks, maps)
    return {key: result[key] for key in ("image_auroc", "pixel_auroc", "aupro")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="an MVTec-layout category")
    parser.add_argument("--backbones", nargs="+", default=list(LITE))
    parser.add_argument("--set", nargs="*", default=[], help="PatchCore settings key=value (JSON values)")
    parser.add_argument("--skip-concat", action="store_true", help="only the single models and their fusion")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    splits = load_mvtec(args.data)
    print(f"machine: {platform.machine()}, threads {args.threads}; data {args.data}; settings {settings}")
    rows, singles = [], []

    def run(name: str, backbone) -> dict:
        detector = create("patchcore", backbone=backbone, device="cpu", **settings)
        start = time.perf_counter()
        detector.fit(splits)
        fit_s = time.perf_counter() - start
        out = outputs(detector, splits.test)
        row = {
            "model": name,
            **evaluate(out["label"], out["raw_score"], out["mask"], out["raw_map"]),
            "fit_s": round(fit_s, 1),
            "img_s": round(len(splits.test) / out["seconds"], 2),
            "bank": list(detector.tile_module_.memory_bank.shape),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        return out

    for backbone in args.backbones:
        singles.append(run(backbone, backbone))
    fused_maps = [np.mean(maps, axis=0) for maps in zip(*(s["map"] for s in singles), strict=True)]
    fused = {
        "model": "late fusion: mean of normalised outputs of " + " + ".join(args.backbones),
        **evaluate(
            singles[0]["label"], np.mean([s["score"] for s in singles], 0), singles[0]["mask"], fused_maps
        ),
        "fit_s": round(sum(r["fit_s"] for r in rows), 1),
        "img_s": round(len(splits.test) / sum(s["seconds"] for s in singles), 2),
        "bank": None,
    }
    rows.append(fused)
    print(json.dumps(fused), flush=True)
    if not args.skip_concat:
        run("concatenated features of " + " + ".join(args.backbones), tuple(args.backbones))

    print("\n| model | image AUROC | pixel AUROC | AUPRO | fit s | img/s | bank rows x dims |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        bank = " x ".join(map(str, row["bank"])) if row["bank"] else "–"
        print(
            f"| {row['model']} | {row['image_auroc']:.4f} | {row['pixel_auroc']:.4f} | {row['aupro']:.4f} "
            f"| {row['fit_s']} | {row['img_s']} | {bank} |"
        )
    if args.out:
        with args.out.open("a") as handle:
            for row in rows:
                handle.write(json.dumps({"data": str(args.data), "settings": settings, **row}) + "\n")


if __name__ == "__main__":
    main()
