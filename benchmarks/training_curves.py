"""Plot the per-epoch training and validation losses recorded by `benchmarks/run.py` (its "history").

    python benchmarks/training_curves.py docs/raw/detectors/mtd_simplenet.jsonl \
        docs/raw/detectors/mtd_rd4ad.jsonl --out docs/images/detector_curves.png

One panel per JSON line that has a history: training loss and validation loss against the epoch, on a log
scale, with the epoch that was kept (lowest validation value) marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path, help="JSON-lines files written by run.py --out")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    runs = [
        json.loads(line)
        for path in args.results
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("history")
    ]
    if not runs:
        raise SystemExit(f"no run with a per-epoch history in {[str(p) for p in args.results]}")
    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False)
    for axis, run in zip(axes[0], runs, strict=True):
        history = run["history"]
        epochs = [h["epoch"] for h in history]
        monitor = "val_neg_auroc" if "val_neg_auroc" in history[0] else "val_loss"
        axis.plot(epochs, [h["loss"] for h in history], label="training loss")
        axis.plot(epochs, [h["val_loss"] for h in history], label="validation loss (held-out good)")
        best = min(history, key=lambda h: h[monitor])
        axis.axvline(best["epoch"], color="grey", linestyle=":", label=f"kept: epoch {best['epoch']}")
        axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.set_title(
            f"{run['model']} on {run['name']}: image AUROC {run['image_auroc']:.3f}, "
            f"fit {run['fit_s']:.0f} s",
            fontsize=9,
        )
        axis.legend(fontsize=8)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
