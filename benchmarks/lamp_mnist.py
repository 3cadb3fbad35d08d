"""LAMP paper, Table 1: ten one-class MNIST tasks, L2 vs L2-LAMP, per training batch size.

For each digit d: train the autoencoder on the MNIST training images of d (90 %, 10 % held out as
validation for the best-epoch choice and the threshold), score the whole 10,000-image test set with
the mean squared reconstruction error, and take the AUROC with d as normal and the other nine digits as
anomalous. The table averages the ten AUROCs. Images are zero-padded from 28 to 32 px (LeNet's input)
because the autoencoder halves the image `depth` times.

    python benchmarks/lamp_mnist.py --batch-sizes 128 32 --epochs 5 --out docs/raw/lamp_mnist

Each finished (batch size, loss, digit) is appended to OUT.jsonl at once, so an interrupted run keeps
what it did and a rerun skips it; OUT.md gets the table of everything in OUT.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

PAPER = {  # Park et al., Table 1 (mean AUROC over the ten tasks)
    "l2": {1024: 0.658, 128: 0.919, 32: 0.921, 16: 0.926, 4: 0.931, 1: 0.919},
    "l2_lamp": {1024: 0.712, 128: 0.925, 32: 0.929, 16: 0.929, 4: 0.932, 1: 0.927},
}


def padded_rgb(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 32, 32, 3) uint8, 2 px of black on each side."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=3)


def run_one(digit: int, batch_size: int, lamp: bool, args: argparse.Namespace, data: dict) -> dict:
    import torch

    from defectlens.metrics import image_auroc
    from defectlens.models import create

    train = padded_rgb(data["train_x"][data["train_y"] == digit])
    detector = create(
        "autoencoder",
        loss="l2",
        lamp=lamp,
        optimizer=args.optimizer,
        lr=args.lr,
        max_epochs=args.epochs,
        patience=None,
        channels=1,
        depth=3,
        width=args.width,
        latent_dim=args.latent_dim,
        blur_sigma=0.0,
        image_score="mean",
        image_size=32,
        batch_size=batch_size,
        seed=args.seed,
        device="cpu",
    )
    start = time.perf_counter()
    detector.fit(list(train))
    fit_s = time.perf_counter() - start
    test = torch.from_numpy(padded_rgb(data["test_x"])).permute(0, 3, 1, 2)
    scores = np.concatenate(
        [detector.score_batch(test[i : i + 1000].float() / 255)[0] for i in range(0, len(test), 1000)]
    )
    labels = (data["test_y"] != digit).astype(int)
    return {
        "digit": digit,
        "batch_size": batch_size,
        "loss": "l2_lamp" if lamp else "l2",
        "auroc": round(image_auroc(labels, scores), 4),
        "n_train": len(train),
        "epochs": len(detector.history_),
        "best_val_loss": round(min(h["val_loss"] for h in detector.history_), 6),
        "fit_s": round(fit_s, 1),
        "settings": {
            k: getattr(args, k) for k in ("epochs", "optimizer", "lr", "width", "latent_dim", "seed")
        },
    }


def table(results: list[dict]) -> str:
    sizes = sorted({r["batch_size"] for r in results}, reverse=True)
    lines = [
        "| loss | "
        + " | ".join(f"BS {b} (ours)" for b in sizes)
        + " | "
        + " | ".join(f"BS {b} (paper)" for b in sizes)
        + " |",
        "|---|" + "---|" * (2 * len(sizes)),
    ]
    for loss in ("l2", "l2_lamp"):
        ours = []
        for b in sizes:
            runs = [r["auroc"] for r in results if r["batch_size"] == b and r["loss"] == loss]
            ours.append(f"{np.mean(runs):.3f} ({len(runs)}/10)" if runs else "-")
        paper = [f"{PAPER[loss].get(b, float('nan')):.3f}" for b in sizes]
        lines.append(f"| {loss} | " + " | ".join(ours) + " | " + " | ".join(paper) + " |")
    lines += [
        "",
        "Per digit (AUROC, L2 -> L2-LAMP):",
        "",
        "| digit | " + " | ".join(f"BS {b}" for b in sizes),
    ]
    lines.append("|---|" + "---|" * len(sizes))
    for digit in range(10):
        cells = []
        for b in sizes:
            pair = {r["loss"]: r["auroc"] for r in results if r["batch_size"] == b and r["digit"] == digit}
            cells.append(f"{pair.get('l2', float('nan')):.3f} -> {pair.get('l2_lamp', float('nan')):.3f}")
        lines.append(f"| {digit} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 32])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/raw/lamp_mnist"))
    args = parser.parse_args()

    import torch

    from defectlens.data.mnist import load_mnist

    torch.set_num_threads(args.threads)
    train_x, train_y = load_mnist(args.data, "train")
    test_x, test_y = load_mnist(args.data, "test")
    data = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    jsonl = args.out.with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    for batch_size in args.batch_sizes:
        for digit in args.digits:
            for lamp in (False, True):
                key = (digit, batch_size, "l2_lamp" if lamp else "l2")
                if any((r["digit"], r["batch_size"], r["loss"]) == key for r in done):
                    continue
                result = run_one(digit, batch_size, lamp, args, data)
                done.append(result)
                with jsonl.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                print(json.dumps(result), flush=True)
                args.out.with_suffix(".md").write_text(header(args) + table(done))


def header(args: argparse.Namespace) -> str:
    import torch

    return (
        f"# LAMP, MNIST one-class (paper Table 1)\n\n"
        f"Data: MNIST IDX files from {args.data} (md5 checked); 28 px zero-padded to 32 px, grey.\n"
        f"Model: autoencoder depth 3, width {args.width}, latent {args.latent_dim}; {args.optimizer} "
        f"(lr {args.lr or 'default'}), {args.epochs} epochs, best epoch by validation loss (10 % of the "
        f"digit's training images); score = mean squared error over the image.\n"
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s).\n\n"
    )


if __name__ == "__main__":
    main()
