"""LAMP paper, Table 2 layout: base loss vs LAMP for L2, L1 and SSIM, per optimiser, image AUROC.

Runs on MVTec-layout categories (MVTec AD itself is not available offline; by default the Magnetic Tile
Defect set in ../shared/data/mtd/magnetic_tile). For each (category, optimiser, base loss, LAMP or not)
the autoencoder is trained on train/good (10 % held out for the best-epoch choice and the threshold) and
scored on the test split. The anomaly map uses the same distance as the training loss; the image score
of the table is the map's maximum (`image_score="max"`), and the mean of the map is reported beside it.

    python benchmarks/lamp_mvtec.py --optimizers adam --image-size 64 --epochs 25 --out docs/raw/lamp_mtd

Each finished configuration is appended to OUT.jsonl at once (a rerun skips it); OUT.md gets the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

LOSSES = ("l2", "l1", "ssim")


def run_one(category: Path, optimizer: str, loss: str, lamp: bool, args: argparse.Namespace) -> dict:
    from defectlens.data import load_mvtec
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.metrics import image_auroc, pixel_auroc
    from defectlens.models import create

    splits = load_mvtec(category, seed=args.seed)
    detector = create(
        "autoencoder",
        loss=loss,
        lamp=lamp,
        optimizer=optimizer,
        max_epochs=args.epochs,
        patience=None,
        channels=args.channels,
        depth=args.depth,
        width=args.width,
        latent_dim=args.latent_dim,
        blur_sigma=args.blur_sigma,
        image_score="max",
        image_size=args.image_size,
        batch_size=args.batch_size,
        seed=args.seed,
        device="cpu",
    )
    start = time.perf_counter()
    detector.fit(splits)
    fit_s = time.perf_counter() - start
    scores, means, labels, maps, masks = [], [], [], [], []
    for batch in loader(as_dataset(splits.test, detector.input_resize), 32):
        batch_scores, batch_maps = detector.score_batch(batch.images)
        scores.append(batch_scores)
        means.append(batch_maps.mean(axis=(1, 2)))
        labels.append(batch.labels.numpy())
        for m, mask, geometry in zip(batch_maps, batch.masks, batch.geometries, strict=True):
            maps.append(geometry.crop_content(m))
            masks.append(geometry.crop_content(mask.numpy()) if mask is not None else np.zeros(m.shape, bool))
    labels = np.concatenate(labels)
    return {
        "category": category.name,
        "optimizer": optimizer,
        "loss": loss,
        "lamp": lamp,
        "image_auroc": round(image_auroc(labels, np.concatenate(scores)), 4),
        "image_auroc_mean_score": round(image_auroc(labels, np.concatenate(means)), 4),
        "pixel_auroc": round(pixel_auroc(masks, maps), 4),
        "epochs": len(detector.history_),
        "best_epoch": int(np.argmin([h["val_loss"] for h in detector.history_])) + 1,
        "fit_s": round(fit_s, 1),
        "settings": {
            k: getattr(args, k)
            for k in (
                "image_size",
                "epochs",
                "batch_size",
                "channels",
                "depth",
                "width",
                "latent_dim",
                "blur_sigma",
                "seed",
            )
        },
    }


def table(results: list[dict], key: str) -> str:
    optimizers = [o for o in ("sgd", "rmsprop", "adam") if any(r["optimizer"] == o for r in results)]
    columns = [(loss, o) for loss in LOSSES for o in optimizers]
    names = {"l2": "L2", "l1": "L1", "ssim": "SSIM"}
    lines = [
        "| category | " + " | ".join(f"{names[loss]} {o}" for loss, o in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for category in sorted({r["category"] for r in results}):
        cells = []
        for loss, o in columns:
            pair = {
                r["lamp"]: r[key]
                for r in results
                if (r["category"], r["loss"], r["optimizer"]) == (category, loss, o)
            }
            base, amplified = pair.get(False), pair.get(True)
            if base is None and amplified is None:
                cells.append("-")
                continue
            text = [f"{v:.3f}" if v is not None else "?" for v in (base, amplified)]
            if base is not None and amplified is not None:
                text[int(amplified > base)] = (
                    f"**{text[int(amplified > base)]}**" if base != amplified else text[0]
                )
            cells.append(" -> ".join(text))
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--categories", type=Path, nargs="+", default=[Path("../shared/data/mtd/magnetic_tile")]
    )
    parser.add_argument("--optimizers", nargs="+", default=["adam"], choices=["sgd", "rmsprop", "adam"])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--blur-sigma", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/raw/lamp_mtd"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    jsonl = args.out.with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    for category in args.categories:
        for optimizer in args.optimizers:
            for loss in args.losses:
                for lamp in (False, True):
                    key = (category.name, optimizer, loss, lamp)
                    if any((r["category"], r["optimizer"], r["loss"], r["lamp"]) == key for r in done):
                        continue
                    result = run_one(category, optimizer, loss, lamp, args)
                    done.append(result)
                    with jsonl.open("a") as handle:
                        handle.write(json.dumps(result) + "\n")
                    print(json.dumps(result), flush=True)
                    args.out.with_suffix(".md").write_text(report(done, args))


def report(results: list[dict], args: argparse.Namespace) -> str:
    import torch

    return (
        "# LAMP on MVTec-layout data (paper Table 2 layout)\n\n"
        f"Model: autoencoder, {args.image_size} px squash, channels {args.channels}, depth {args.depth}, "
        f"width {args.width}, latent {args.latent_dim}; {args.epochs} epochs, batch {args.batch_size}, "
        f"optimiser default lr, best epoch by validation loss; map = training distance, blur sigma "
        f"{args.blur_sigma}. Cells: base -> LAMP, the better in bold.\n"
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s).\n\n"
        "## Image AUROC, score = max of the map\n\n"
        + table(results, "image_auroc")
        + "\n## Image AUROC, score = mean of the map\n\n"
        + table(results, "image_auroc_mean_score")
        + "\n## Pixel AUROC\n\n"
        + table(results, "pixel_auroc")
        + "\n## Runs\n\n| optimiser | loss | LAMP | epochs | best epoch | fit s |\n"
        + "|---|---|---|---|---|---|\n"
        + "".join(
            f"| {r['optimizer']} | {r['loss']} | {r['lamp']} | {r['epochs']} | {r['best_epoch']} "
            f"| {r['fit_s']} |\n"
            for r in results
        )
    )


if __name__ == "__main__":
    main()
