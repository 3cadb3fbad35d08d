"""LAMP paper, Table 2 layout: base loss vs LAMP for L2, L1 and SSIM, per optimiser, image AUROC.

Runs on MVTec-layout categories (MVTec AD itself is not available offline; by default the Magnetic Tile
Defect set in ../shared/data/mtd/magnetic_tile). For each (category, optimiser, base loss, LAMP or not)
the autoencoder is trained on train/good (10 % held out for the best-epoch choice and the threshold) and
scored on the test split. The anomaly map uses the same distance as the training loss; the image score
of the table is the map's maximum (`image_score="max"`), and the mean of the map is reported beside it.

    python benchmarks/lamp_mvtec.py --optimizers adam --image-size 64 --epochs 25 --out docs/raw/lamp_mtd
    python benchmarks/lamp_mvtec.py --categories ../shared/data/mvtec_screw --optimizers sgd rmsprop adam \
        --image-size 128 --epochs 100 --seeds 0 1 2 --threads 2 --out docs/raw/lamp_screw

Each finished run is appended to OUT.jsonl at once, so the grid can be run in parts (a rerun skips what is
there); OUT.md gets the tables, mean ± std over the seeds, of the runs with the same settings only. A run
whose best validation loss is not below TRAINED_RATIO of its first epoch's did not train: it is listed but
left out of the cells, which say how many seeds they hold when that is fewer than asked.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import describe_machine

LOSSES = ("l2", "l1", "ssim")
TRAINED_RATIO = 0.9  # best validation loss / first epoch's: above this the autoencoder did not learn
# The LAMP paper's Table 2 (image AUROC, base -> LAMP), for the categories that are available here.
PAPER = {
    "mvtec_screw": {
        ("l2", "sgd"): (0.817, 0.827),
        ("l2", "rmsprop"): (0.826, 0.826),
        ("l2", "adam"): (0.831, 0.804),
        ("l1", "sgd"): (0.774, 0.827),
        ("l1", "rmsprop"): (0.826, 0.826),
        ("l1", "adam"): (0.724, 0.831),
        ("ssim", "sgd"): (0.752, 0.712),
        ("ssim", "rmsprop"): (0.827, 0.832),
        ("ssim", "adam"): (0.789, 0.788),
    }
}
SETTINGS = ("image_size", "epochs", "batch_size", "channels", "depth", "width", "latent_dim", "blur_sigma")


def run_one(
    category: Path, optimizer: str, loss: str, lamp: bool, seed: int, args: argparse.Namespace
) -> dict:
    from defectlens.data import load_mvtec
    from defectlens.data.inputs import as_dataset, loader
    from defectlens.metrics import image_auroc, pixel_auroc
    from defectlens.models import create

    splits = load_mvtec(category, seed=seed)
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
        seed=seed,
        device="cpu",
        calibration_refits=0,  # the table needs raw scores only, not a calibrated threshold
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
    val_losses = [h["val_loss"] for h in detector.history_]
    return {
        "category": category.name,
        "optimizer": optimizer,
        "loss": loss,
        "lamp": lamp,
        "seed": seed,
        "image_auroc": round(image_auroc(labels, np.concatenate(scores)), 4),
        "image_auroc_mean_score": round(image_auroc(labels, np.concatenate(means)), 4),
        "pixel_auroc": round(pixel_auroc(masks, maps), 4),
        "epochs": len(detector.history_),
        "best_epoch": int(np.argmin(val_losses)) + 1,
        "val_loss_first": val_losses[0],
        "val_loss_best": min(val_losses),
        "trained": min(val_losses) < TRAINED_RATIO * val_losses[0],
        "fit_s": round(fit_s, 1),
        "settings": {k: getattr(args, k) for k in SETTINGS},
    }


def _cell(values: list[float], seeds: int) -> str:
    if not values:
        return "–"
    text = f"{np.mean(values):.3f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")
    return text + (f" (n={len(values)})" if len(values) < seeds else "")


def table(results: list[dict], key: str, seeds: int) -> str:
    """One row per category (and one per paper row): base -> LAMP per (loss, optimiser), over the seeds."""
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
            runs = [r for r in results if (r["category"], r["loss"], r["optimizer"]) == (category, loss, o)]
            base, amplified = (
                [r[key] for r in runs if r["lamp"] is lamp and r["trained"]] for lamp in (False, True)
            )
            text = [_cell(base, seeds), _cell(amplified, seeds)]
            if base and amplified and np.mean(base) != np.mean(amplified):
                better = int(np.mean(amplified) > np.mean(base))
                text[better] = f"**{text[better]}**"
            cells.append(" -> ".join(text))
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
        if key == "image_auroc" and category in PAPER:
            paper = [PAPER[category].get(column) for column in columns]
            cells = [f"{p[0]:.3f} -> {p[1]:.3f}" if p else "–" for p in paper]
            lines.append(f"| {category}, paper | " + " | ".join(cells) + " |")
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed and cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/raw/lamp_mtd"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    jsonl = args.out.with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    settings = {k: getattr(args, k) for k in SETTINGS}
    # Runs of other settings, or from before the training check was recorded, are not part of this grid.
    done = [r for r in done if "trained" in r and {k: r["settings"].get(k) for k in SETTINGS} == settings]
    for seed in args.seeds:
        for category in args.categories:
            for optimizer in args.optimizers:
                for loss in args.losses:
                    for lamp in (False, True):
                        key = (category.name, optimizer, loss, lamp, seed)
                        if any(
                            (r["category"], r["optimizer"], r["loss"], r["lamp"], r["seed"]) == key
                            for r in done
                        ):
                            continue
                        result = run_one(category, optimizer, loss, lamp, seed, args)
                        done.append(result)
                        with jsonl.open("a") as handle:
                            handle.write(json.dumps(result) + "\n")
                        print(json.dumps(result), flush=True)
                        args.out.with_suffix(".md").write_text(report(done, args))


def report(results: list[dict], args: argparse.Namespace) -> str:
    import torch

    seeds = len(args.seeds)
    failed = [r for r in results if not r["trained"]]
    return (
        "# LAMP on MVTec-layout data (paper Table 2 layout)\n\n"
        f"Model: autoencoder, {args.image_size} px squash, channels {args.channels}, depth {args.depth}, "
        f"width {args.width}, latent {args.latent_dim}; {args.epochs} epochs, batch {args.batch_size}, "
        f"optimiser default lr, best epoch by validation loss; map = training distance, blur sigma "
        f"{args.blur_sigma}. Cells: base -> LAMP, mean ± std over seeds {args.seeds}, the better in bold. "
        f"A run trained if its best validation loss fell below {TRAINED_RATIO} of its first epoch's; "
        f"{len(failed)} of {len(results)} runs did not and are left out of the cells.\n"
        f"Machine: {describe_machine()}, torch {torch.__version__}, {args.threads} thread(s).\n\n"
        "## Image AUROC, score = max of the map\n\n"
        + table(results, "image_auroc", seeds)
        + "\n## Image AUROC, score = mean of the map\n\n"
        + table(results, "image_auroc_mean_score", seeds)
        + "\n## Pixel AUROC\n\n"
        + table(results, "pixel_auroc", seeds)
        + "\n## Runs\n\n| optimiser | loss | LAMP | seed | epochs | best epoch | val loss first -> best "
        + "| trained | fit s |\n"
        + "|---|---|---|---|---|---|---|---|---|\n"
        + "".join(
            f"| {r['optimizer']} | {r['loss']} | {r['lamp']} | {r['seed']} | {r['epochs']} "
            f"| {r['best_epoch']} | {r['val_loss_first']:.4g} -> {r['val_loss_best']:.4g} "
            f"| {r['trained']} | {r['fit_s']} |\n"
            for r in results
        )
    )


if __name__ == "__main__":
    main()
