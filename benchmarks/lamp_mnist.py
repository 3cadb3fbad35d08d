"""LAMP paper, Table 1: ten one-class MNIST tasks, L2 vs L2-LAMP, per training batch size, over seeds.

For each digit d: train the autoencoder on the MNIST training images of d (90 %, 10 % held out as
validation for early stopping, the best-epoch choice and the threshold), score the whole 10,000-image test
set with the mean squared reconstruction error, and take the AUROC with d as normal and the other nine
digits as anomalous. The table averages the ten AUROCs per seed, then gives the mean ± std over seeds.
Images are zero-padded from 28 to 32 px (LeNet's input) because the autoencoder halves the image `depth`
times. Training runs until the validation loss has not improved for `--patience` epochs (it has
flattened), at most `--epochs`; each row records its validation curve.

A run "trained" when its best validation loss (the MSE; for L2-LAMP its amplified loss, which is never
smaller than the MSE) is below half the MSE of an all-black reconstruction (the mean
squared pixel of the digit's images): a collapsed run's reconstruction is black and its MSE is exactly
that. Cells average trained runs only, and say how many did not train.

    python benchmarks/lamp_mnist.py --batch-sizes 1024 128 32 16 --seeds 0 1 2 --out docs/raw/lamp_table1
    python benchmarks/lamp_mnist.py --batch-sizes 4 1 --seeds 0 --out docs/raw/lamp_table1

Each finished (seed, batch size, loss, digit) is appended to OUT.jsonl at once, so an interrupted run keeps
what it did and a rerun skips it (rows of other settings are ignored); OUT.md gets the table of everything
in OUT.jsonl, OUT.png the validation curves of seed 0.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import describe_machine

TRAINED_RATIO = 0.5  # of the all-black reconstruction's MSE
SETTINGS = ("epochs", "patience", "optimizer", "lr", "width", "latent_dim")
PAPER = {  # Park et al., Table 1 (mean AUROC over the ten tasks)
    "l2": {1024: 0.658, 128: 0.919, 32: 0.921, 16: 0.926, 4: 0.931, 1: 0.919},
    "l2_lamp": {1024: 0.712, 128: 0.925, 32: 0.929, 16: 0.929, 4: 0.932, 1: 0.927},
}


def padded_rgb(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 32, 32, 3) uint8, 2 px of black on each side."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=3)


def run_one(digit: int, batch_size: int, lamp: bool, seed: int, args: argparse.Namespace, data: dict) -> dict:
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
        patience=args.patience,
        channels=1,
        depth=3,
        width=args.width,
        latent_dim=args.latent_dim,
        blur_sigma=0.0,
        image_score="mean",
        image_size=32,
        batch_size=batch_size,
        seed=seed,
        device="cpu",
        calibration_refits=0,  # the table needs raw scores only
    )
    start = time.perf_counter()
    detector.fit(list(train))
    fit_s = time.perf_counter() - start
    test = torch.from_numpy(padded_rgb(data["test_x"])).permute(0, 3, 1, 2)
    scores = np.concatenate(
        [detector.score_batch(test[i : i + 1000].float() / 255)[0] for i in range(0, len(test), 1000)]
    )
    labels = (data["test_y"] != digit).astype(int)
    val_losses = [round(h["val_loss"], 6) for h in detector.history_]
    black_mse = float(((train[..., 0] / 255.0) ** 2).mean())
    return {
        "digit": digit,
        "batch_size": batch_size,
        "loss": "l2_lamp" if lamp else "l2",
        "seed": seed,
        "auroc": round(image_auroc(labels, scores), 4),
        "n_train": len(train),
        "epochs": len(val_losses),
        "best_epoch": int(np.argmin(val_losses)) + 1,
        "best_val_loss": min(val_losses),
        "black_mse": round(black_mse, 6),
        "trained": min(val_losses) < TRAINED_RATIO * black_mse,
        "flattened": len(val_losses) < args.epochs,
        "val_loss": val_losses,
        "fit_s": round(fit_s, 1),
        "settings": {k: getattr(args, k) for k in SETTINGS},
    }


def cell(results: list[dict], loss: str, batch_size: int) -> str:
    """Mean ± std over the seeds whose ten digits all trained, of the mean AUROC over the ten digits."""
    runs = [r for r in results if (r["loss"], r["batch_size"]) == (loss, batch_size)]
    if not runs:
        return "–"
    means = []
    for seed in sorted({r["seed"] for r in runs}):
        of_seed = [r for r in runs if r["seed"] == seed and r["trained"]]
        if len({r["digit"] for r in of_seed}) == 10:
            means.append(np.mean([r["auroc"] for r in of_seed]))
    failed = sum(not r["trained"] for r in runs)
    text = (
        "–" if not means else f"{np.mean(means):.3f}" + (f" ± {np.std(means):.3f}" if len(means) > 1 else "")
    )
    notes = [f"{len(means)} seed{'s' * (len(means) != 1)}"] + [f"{failed} did not train"] * bool(failed)
    return f"{text} ({', '.join(notes)})"


def table(results: list[dict]) -> str:
    sizes = sorted({r["batch_size"] for r in results}, reverse=True)
    lines = [
        "| loss | " + " | ".join(f"BS {b}" for b in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for loss in ("l2", "l2_lamp"):
        lines.append(f"| {loss}, ours | " + " | ".join(cell(results, loss, b) for b in sizes) + " |")
        paper = [f"{PAPER[loss][b]:.3f}" if b in PAPER[loss] else "–" for b in sizes]
        lines.append(f"| {loss}, paper | " + " | ".join(paper) + " |")
    epochs = {b: [r["epochs"] for r in results if r["batch_size"] == b] for b in sizes}
    lines += [
        "",
        "Epochs run (min-median-max; early stopped when flat): "
        + ", ".join(f"BS {b} {min(e)}-{int(np.median(e))}-{max(e)}" for b, e in epochs.items())
        + f". Runs that hit the epoch limit before flattening: {sum(not r['flattened'] for r in results)}.",
        "",
        "Per digit, seed 0 (AUROC, L2 -> L2-LAMP):",
        "",
        "| digit | " + " | ".join(f"BS {b}" for b in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for digit in range(10):
        cells = []
        for b in sizes:
            pair = {
                r["loss"]: r["auroc"]
                for r in results
                if (r["batch_size"], r["digit"], r["seed"]) == (b, digit, 0)
            }
            cells.append(f"{pair.get('l2', float('nan')):.3f} -> {pair.get('l2_lamp', float('nan')):.3f}")
        lines.append(f"| {digit} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(results: list[dict], path: Path) -> None:
    """Validation loss (MSE, or L2-LAMP's amplified MSE) against the epoch, seed 0: one panel per batch
    size, one line per digit and loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["batch_size"] for r in results}, reverse=True)
    figure, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 3), squeeze=False)
    for axis, size in zip(axes[0], sizes, strict=True):
        for r in results:
            if (r["batch_size"], r["seed"]) == (size, 0):
                colour = "tab:orange" if r["loss"] == "l2_lamp" else "tab:blue"
                axis.plot(range(1, len(r["val_loss"]) + 1), r["val_loss"], color=colour, lw=0.8, alpha=0.7)
        axis.set(title=f"batch {size}", xlabel="epoch", yscale="log")
    axes[0][0].set_ylabel("validation loss")
    figure.suptitle("seed 0, one line per digit: blue L2, orange L2-LAMP", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def header(args: argparse.Namespace) -> str:
    import torch

    return (
        "# LAMP, MNIST one-class (paper Table 1)\n\n"
        f"Data: MNIST IDX files from {args.data} (md5 checked); 28 px zero-padded to 32 px, grey.\n"
        f"Model: autoencoder depth 3, width {args.width}, latent {args.latent_dim}, output bias started at "
        f"the training mean; {args.optimizer} (lr {args.lr or 'default'}), until the validation loss "
        f"(10 % of the digit's training images) has not improved for {args.patience} epochs, at most "
        f"{args.epochs}; best epoch kept; score = mean squared error over the image. A cell is the mean ± "
        "std over seeds of the ten digits' mean AUROC, from runs that trained (best validation loss below "
        f"{TRAINED_RATIO} x that of an all-black reconstruction).\n"
        f"Machine: {describe_machine()}, torch {torch.__version__}, {args.threads} thread(s).\n\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 128, 32, 16])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100, help="the most epochs of a run")
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/raw/lamp_table1"))
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
    settings = {k: getattr(args, k) for k in SETTINGS}
    done = [r for r in done if r["settings"] == settings]
    for seed in args.seeds:
        for batch_size in args.batch_sizes:
            for digit in args.digits:
                for lamp in (False, True):
                    key = (seed, batch_size, "l2_lamp" if lamp else "l2", digit)
                    if any((r["seed"], r["batch_size"], r["loss"], r["digit"]) == key for r in done):
                        continue
                    result = run_one(digit, batch_size, lamp, seed, args, data)
                    done.append(result)
                    with jsonl.open("a") as handle:
                        handle.write(json.dumps(result) + "\n")
                    print(json.dumps({k: v for k, v in result.items() if k != "val_loss"}), flush=True)
                    write_report(done, args)
    if done:  # also after a rerun with nothing left to do (e.g. after parts run in parallel)
        write_report(done, args)


def write_report(results: list[dict], args: argparse.Namespace) -> None:
    args.out.with_suffix(".md").write_text(header(args) + table(results))
    plot_curves(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
