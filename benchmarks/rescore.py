"""Score one trained checkpoint again under inference-time settings, without retraining.

Settings that only act at inference (STFPM's `map_combination`, `blur_sigma` of every map model,
PatchCore's `num_neighbors` or `search`) can be compared on one fitted model: this script loads the
checkpoint once per combination of the grid with those settings replaced, scores the MVTec-layout test
set and prints one markdown row per combination. A setting that changes the saved state (layers, the
backbone) makes the checkpoint fail to load.

    python benchmarks/run.py --models stfpm --data-root ../shared/data/mtd --save-models models
    python benchmarks/rescore.py --checkpoint models/magnetic_tile-stfpm.pt \\
        --data ../shared/data/mtd/magnetic_tile --grid 'map_combination="product","sum"' blur_sigma=2,4,8

Each grid item is key=v1,v2,... with JSON values (strings in double quotes).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path


def parse_grid(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--grid takes key=v1,v2,..., got {item!r}")
        grid[key] = json.loads(f"[{values}]")
    return grid


def with_params(checkpoint: dict, overrides: dict, folder: Path):
    """The checkpoint's detector rebuilt with `overrides` replacing some of its settings."""
    import torch

    from defectlens.models import load

    path = folder / "rescored.pt"
    torch.save({**checkpoint, "params": {**checkpoint["params"], **overrides}}, path)
    return load(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="model.pt or a --save-models file")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout category folder")
    parser.add_argument("--grid", nargs="+", required=True, help="key=v1,v2,... (JSON values)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import torch

    from defectlens.data import load_mvtec
    from defectlens.engine import score_records

    torch.set_num_threads(args.threads)
    grid = parse_grid(args.grid)
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    splits = load_mvtec(args.data, seed=args.seed)
    print(
        f"checkpoint: {args.checkpoint} ({checkpoint['detector']}), data: {args.data}, "
        f"{len(splits.test)} test images, threads {args.threads}"
    )
    print(f"saved settings: {json.dumps(checkpoint['params'])}\n")
    columns = [*grid, "image AUROC", "pixel AUROC", "AUPRO", "F1 max", "img/s", "image AUROC per type"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        for values in itertools.product(*grid.values()):
            overrides = dict(zip(grid, values, strict=True))
            detector = with_params(checkpoint, overrides, Path(folder))
            start = time.perf_counter()
            scored = score_records(detector, splits.test)
            speed = len(splits.test) / (time.perf_counter() - start)
            result = scored.evaluate(detector.calibration.image_threshold)
            per_type = scored.per_type_auroc()
            cells = [json.dumps(v) for v in values]
            cells += [f"{result[k]:.4f}" for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")]
            cells += [f"{speed:.1f}", " ".join(f"{t} {a:.3f}" for t, a in sorted(per_type.items()))]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
