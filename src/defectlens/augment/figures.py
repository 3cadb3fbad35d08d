"""Copy-check pictures: nearest-distance histograms and the closest generated/training pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defectlens.augment.metrics import CopyStats


def _figure(size: tuple[float, float]):  # -> matplotlib.figure.Figure, headless, never through pyplot
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_distance_histogram(
    generated: np.ndarray, real: np.ndarray, stats: CopyStats, space: str, path: Path
) -> Path:
    """Histograms of generated -> nearest training and real -> nearest other real distances, with the
    copy threshold."""
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    bins = np.linspace(min(generated.min(), real.min()), max(generated.max(), real.max()), 41)
    for values, colour, label in (
        (real, "tab:blue", "real -> nearest other real"),
        (generated, "tab:orange", "generated -> nearest real"),
    ):
        ax.hist(values, bins=bins, alpha=0.55, color=colour, density=True, label=f"{label} (n={len(values)})")
    ax.axvline(
        stats.threshold,
        color="black",
        ls="--",
        lw=1.2,
        label=f"{stats.percentile:g}th pct of real: {stats.close_fraction:.0%} of generated below",
    )
    ax.set(xlabel=f"Euclidean distance ({space})", ylabel="density")
    ax.set_title(f"Nearest-neighbour distances, {space}" + (" - COPYING FLAGGED" if stats.flagged else ""))
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_closest_pairs(
    generated: np.ndarray,
    real: np.ndarray,
    distances: np.ndarray,
    indices: np.ndarray,
    rows: int,
    space: str,
    path: Path,
) -> Path:
    """The `rows` generated images nearest to any training image, each followed by its k nearest
    training images with their distances.

    Args:
        generated, real: uint8 images (N, S, S) or (N, S, S, 3).
        distances, indices: (N_generated, k) nearest training images of each generated image.
    """
    order = np.argsort(distances[:, 0], kind="stable")[:rows]
    k = distances.shape[1]
    fig = _figure((1.5 * (k + 1), 1.6 * len(order) + 0.5))
    grid = fig.subplots(len(order), k + 1, squeeze=False)
    cmap = "gray" if generated.ndim == 3 else None
    for row, g in zip(grid, order, strict=True):
        row[0].imshow(generated[g], cmap=cmap, vmin=0, vmax=255)
        row[0].set_title(f"generated {g}", fontsize=7, color="tab:orange")
        for j in range(k):
            row[j + 1].imshow(real[indices[g, j]], cmap=cmap, vmin=0, vmax=255)
            row[j + 1].set_title(f"train {indices[g, j]}: {distances[g, j]:.3g}", fontsize=7)
        for ax in row:
            ax.set_axis_off()
    fig.suptitle(f"Closest generated/training pairs ({space})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


__all__ = ["save_closest_pairs", "save_distance_histogram"]
