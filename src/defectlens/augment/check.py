"""The copy check and the quality metrics of a GAN augmentation run, written as a report folder.

For `n` images generated from the run, each one's `k` nearest training images are found in two spaces:
pixels (Euclidean over grey or RGB values in [0, 1] at the GAN's size, as the seed's k-NN check) and the
backbone feature space of `defectlens.augment.features`. Their nearest distances are set against the
real images' leave-one-out nearest distances: a generator that makes new images of the class should
place about 5% of them below the 5th percentile of the real-real distances, as fresh real images would;
more than 25% is flagged in that space (see `metrics.copy_statistics`). The run is flagged as copying
when both spaces flag it: a copy is close in both, while each space alone is fooled by something that is
no copy (smooth, average-looking images sit close to everything in pixel space; images with the class's
texture statistics in a new layout sit close in pooled feature space). The Fréchet feature distance and
the KID-style MMD² compare the two sets as wholes.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.augment.features import FEATURE_SPACE, Embedder, pixel_vectors
from defectlens.augment.figures import save_closest_pairs, save_distance_histogram
from defectlens.augment.images import load_image_set
from defectlens.augment.metrics import (
    COPY_MAX_FRACTION,
    COPY_PERCENTILE,
    CopyStats,
    copy_statistics,
    frechet_distance,
    kernel_distance,
    leave_one_out_nearest,
    nearest,
)
from defectlens.augment.runs import contact_sheet, load_run
from defectlens.errors import ConfigError

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
NEAREST_CSV = "nearest.csv"
FRECHET_NAME = "Fréchet feature distance (EfficientNet-Lite0)"
KID_SUBSETS, KID_SUBSET_SIZE = 50, 100


@dataclass(frozen=True)
class SpaceCheck:
    """The copy check in one space: (Q, k) nearest training distances and indices of each query image,
    (N,) leave-one-out nearest distances of the training images, and the rule's verdict."""

    distances: np.ndarray
    indices: np.ndarray
    real_nearest: np.ndarray
    stats: CopyStats


def copy_check(
    real: np.ndarray,
    queries: np.ndarray,
    k: int,
    percentile: float = COPY_PERCENTILE,
    max_fraction: float = COPY_MAX_FRACTION,
) -> SpaceCheck:
    """Copy check of `queries` (Q, D) against training vectors `real` (N, D) in one space."""
    distances, indices = nearest(real, queries, k)
    real_nearest = leave_one_out_nearest(real)
    stats = copy_statistics(distances[:, 0], real_nearest, percentile, max_fraction)
    return SpaceCheck(distances, indices, real_nearest, stats)


def quality(real_features: np.ndarray, generated_features: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Fréchet feature distance and KID-style MMD² (mean and std over subsets) between the two sets."""
    kid, kid_std = kernel_distance(real_features, generated_features, KID_SUBSETS, KID_SUBSET_SIZE, seed)
    return {
        "feature_space": FEATURE_SPACE,
        "frechet_feature_distance": frechet_distance(real_features, generated_features),
        "kid": kid,
        "kid_std": kid_std,
        "kid_subsets": KID_SUBSETS,
        "kid_subset_size": min(KID_SUBSET_SIZE, len(real_features), len(generated_features)),
        "n_real": len(real_features),
        "n_generated": len(generated_features),
    }


def _markdown(report: dict[str, Any]) -> str:
    q = report["quality"]
    lines = [
        f"# Copy check of {report['run']}",
        "",
        f"{report['n_generated']} images generated (seed {report['seed']}) against "
        f"{report['n_train']} training images from {report['data']}, {report['image_size']} px, "
        f"mode {report['mode']}.",
        "",
        f"**Verdict: {'COPYING FLAGGED' if report['flagged'] else 'no copying flagged'}.** Rule: a generated "
        f"image is close when its nearest training image is at most the {COPY_PERCENTILE:g}th percentile of "
        "the real images' nearest-other-real distances (leave-one-out) away; flagged when more than "
        f"{COPY_MAX_FRACTION:.0%} are close (fresh real images give about {COPY_PERCENTILE / 100:.0%}); "
        "the run is flagged when both spaces flag it.",
        "",
        "| space | close fraction | exact copies | threshold | generated nearest: median "
        "| real-real nearest: median | ratio | flagged |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for space, c in report["copy"].items():
        lines.append(
            f"| {space} | {c['close_fraction']:.3f} | {c['exact_copies']} | {c['threshold']:.4g} | "
            f"{c['generated']['median']:.4g} | {c['real']['median']:.4g} | {c['median_ratio']:.3f} | "
            f"{'yes' if c['flagged'] else 'no'} |"
        )
    lines += [
        "",
        f"Feature space: {q['feature_space']}. Pixel space: Euclidean over pixel values in [0, 1].",
        "",
        f"- {FRECHET_NAME}: {q['frechet_feature_distance']:.4g} ({q['n_real']} real vs {q['n_generated']} "
        "generated; biased upward for small sets, compare only at equal sizes; not an FID)",
        f"- KID-style MMD² (cubic polynomial kernel, unbiased): {q['kid']:.4g} ± {q['kid_std']:.2g} "
        f"(std over {q['kid_subsets']} subsets of {q['kid_subset_size']})",
        "",
        "Pictures: " + ", ".join(f"[{name}]({name})" for name in report["files"]),
        "",
    ]
    return "\n".join(lines)


def _write_nearest(path: Path, checks: dict[str, SpaceCheck], train_paths: list[Path]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["space", "generated", "rank", "train_image", "distance"])
        for space, check in checks.items():
            for g, (row_d, row_i) in enumerate(zip(check.distances, check.indices, strict=True)):
                for rank, (d, i) in enumerate(zip(row_d, row_i, strict=True), start=1):
                    writer.writerow([space, g, rank, train_paths[i], f"{d:.6g}"])


def check_run(
    run: str | Path,
    data: str | Path | list[str | Path] | None = None,
    out: str | Path | None = None,
    n: int | None = None,
    k: int = 5,
    seed: int = 0,
    pairs: int = 8,
    force: bool = False,
    progress: bool = False,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Generate `n` images from `run` and compare them with the training images: write `report.json`,
    `report.md`, `nearest.csv` (k nearest training images of every generated image, both spaces) and
    pictures (distance histograms, closest pairs, samples) to `out`.

    Args:
        run: a GAN augmentation run folder.
        data: the training images (folder or files); `None` uses the run's.
        out: report folder; `None` uses `<run>/check`.
        n: images to generate; `None` generates as many as there are training images.
        k: nearest training images per generated image.
        seed: seed of the generated images and the KID subsets.
        pairs: generated images shown with their neighbours in the closest-pairs pictures.
        force: overwrite an existing report folder.
        progress: show progress bars.
        embedder: the feature extractor (default: EfficientNet-Lite0, see `features`).

    Returns:
        The report as written to report.json.

    Raises:
        CheckpointError: `run` is not a GAN augmentation run. DataError: bad training images.
        ConfigError: `n`, `k` or `pairs` < 1, or `out` exists without `force`.
    """
    from defectlens.engine.runs import prepare_output, write_json
    from defectlens.models.gan.detector import generate_images
    from defectlens.reports.figures import save_image

    for name, value in (("n", n if n is not None else 1), ("k", k), ("pairs", pairs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    loaded = load_run(run)
    source = data if data is not None else loaded.data
    real = load_image_set(source, loaded.image_size, loaded.channels, progress)
    target = prepare_output(Path(out) if out is not None else loaded.path / "check", force, "report folder")
    generated = generate_images(loaded.generator, n or len(real.images), seed)
    embedder = embedder or Embedder()
    real_features = embedder(real.images, progress, "features (real)")
    generated_features = embedder(generated, progress, "features (generated)")
    checks = {
        "pixel": copy_check(pixel_vectors(real.images), pixel_vectors(generated), k),
        "feature": copy_check(real_features, generated_features, k),
    }
    files = [save_image(contact_sheet(generated[:64]), target / "samples.png").name]
    for space, check in checks.items():
        label = "pixels" if space == "pixel" else "backbone features"
        files.append(
            save_distance_histogram(
                check.distances[:, 0],
                check.real_nearest,
                check.stats,
                label,
                target / f"distances_{space}.png",
            ).name
        )
        files.append(
            save_closest_pairs(
                generated,
                real.images,
                check.distances,
                check.indices,
                min(pairs, len(generated)),
                label,
                target / f"closest_pairs_{space}.png",
            ).name
        )
    _write_nearest(target / NEAREST_CSV, checks, real.paths)
    report = {
        "run": str(loaded.path),
        "report_dir": str(target),
        "data": str(source) if isinstance(source, str | Path) else f"{len(source)} image files",
        "n_train": len(real.images),
        "n_generated": len(generated),
        "seed": seed,
        "k": k,
        "image_size": loaded.image_size,
        "mode": loaded.mode,
        "flagged": all(check.stats.flagged for check in checks.values()),
        "copy": {space: check.stats.to_dict() for space, check in checks.items()},
        "quality": quality(real_features, generated_features, seed),
        "files": files,
    }
    write_json(target / REPORT_JSON, report)
    (target / REPORT_MD).write_text(_markdown(report))
    logger.info(
        "copy check report: %s", json.dumps({s: c["close_fraction"] for s, c in report["copy"].items()})
    )
    return report


__all__ = ["FRECHET_NAME", "SpaceCheck", "check_run", "copy_check", "quality"]
