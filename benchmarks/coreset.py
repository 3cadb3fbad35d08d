"""PatchCore coreset: textbook greedy vs our exact and partitioned selection, on real MTD patches.

1. On a subset where the textbook loop is affordable: time the textbook loop, our exact mode
   (`pivots=0`) and partitioned mode (`pivots=1000`, the default on large sets); check that exact
   mode picks the very same centres; compare the coverage radius and the test AUROC of the resulting
   memory banks. With several `--seeds` (projection and start point), exact and partitioned run for
   each and their spread is reported, so that a difference can be set against the seed-to-seed noise.
2. On the whole training set: time the partitioned selection at the default ratio 0.1.

    python benchmarks/coreset.py --data ../shared/data/mtd/magnetic_tile --subset-images 100
    python benchmarks/coreset.py --data ../shared/data/mtd/magnetic_tile --seeds 0 1 2 3 4 --skip-full
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from patchcore_eval import EmbeddedTestSet

from defectlens import load_mvtec
from defectlens.data.inputs import as_dataset, loader
from defectlens.models import create
from defectlens.models.patchcore.distances import pairwise_distances
from defectlens.models.patchcore.sampler import DEFAULT_PIVOTS, KCenterGreedy


def textbook(points: torch.Tensor, target: int, start: int) -> torch.Tensor:
    """One centre per iteration, all N distances updated each time (Sener & Savarese; anomalib's loop)."""
    min_dist = pairwise_distances(points, points[start : start + 1]).squeeze(1)
    chosen = [start]
    for _ in range(target - 1):
        nxt = int(min_dist.argmax())
        chosen.append(nxt)
        torch.minimum(min_dist, pairwise_distances(points, points[nxt : nxt + 1]).squeeze(1), out=min_dist)
    return torch.tensor(chosen)


def coverage(features: torch.Tensor, bank: torch.Tensor) -> float:
    """Largest distance from any feature to its nearest bank entry (the k-center objective)."""
    worst = 0.0
    for chunk in features.split(16384):
        worst = max(worst, pairwise_distances(chunk, bank).min(1).values.max().item())
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--subset-images", type=int, default=100)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the projection and start point: exact vs partitioned for each, textbook for the first",
    )
    parser.add_argument("--skip-full", action="store_true", help="skip timing the whole training set")
    args = parser.parse_args()
    torch.set_num_threads(2)

    splits = load_mvtec(args.data)
    detector = create("patchcore", device="cpu")
    module = detector._module(True, torch.empty(0))

    def embed(records: list) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat(
                [
                    module.embed(b.images).permute(0, 2, 3, 1).flatten(0, 2)
                    for b in loader(as_dataset(records, detector.input_resize), 8)
                ]
            ).clone()

    subset = embed(splits.train[: args.subset_images])
    test = EmbeddedTestSet.embed(module, splits.test, detector.input_resize)
    target = round(args.ratio * len(subset))
    print(
        f"subset: {args.subset_images} images, {len(subset)} patches x {subset.shape[1]} dims, "
        f"{target} centres\n"
    )

    def row(name: str, seed: int, seconds: float, chosen: torch.Tensor) -> tuple:
        module.memory_bank = subset[chosen]
        result = test.evaluate(module, test.nearest(module.nearest_distances)[0])
        radius = coverage(subset, subset[chosen])
        return (name, seed, seconds, radius, result["image_auroc"], result["pixel_auroc"], result["aupro"])

    def timed_select(sampler: KCenterGreedy) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        chosen = sampler.select(subset)
        return time.perf_counter() - start, chosen

    rows, same = [], None
    for i, seed in enumerate(args.seeds):
        sampler = KCenterGreedy(ratio=args.ratio, projection_dim=128, pivots=0, seed=seed)
        fast = KCenterGreedy(ratio=args.ratio, projection_dim=128, pivots=DEFAULT_PIVOTS, seed=seed)
        t_exact, exact = timed_select(sampler)
        if i == 0:
            start = time.perf_counter()
            reference = textbook(sampler.project(subset), target, sampler.first_index(len(subset)))
            rows.append(
                row("textbook greedy (1 centre / iteration)", seed, time.perf_counter() - start, reference)
            )
            same = torch.equal(exact, reference)
        rows.append(row("defectlens exact (pivots=0)", seed, t_exact, exact))
        rows.append(row("defectlens partitioned (pivots=1000)", seed, *timed_select(fast)))
        print(*rows[-1], flush=True)

    print("\n| selection | seed | seconds | coverage radius (152-d) | image AUROC | pixel AUROC | AUPRO |")
    print("|---|---|---|---|---|---|---|")
    for name, seed, seconds, radius, image_auroc, pixel_auroc, aupro in rows:
        print(
            f"| {name} | {seed} | {seconds:.1f} | {radius:.3f} | {image_auroc:.4f} | {pixel_auroc:.4f} "
            f"| {aupro:.4f} |"
        )
    if len(args.seeds) > 1:
        print("\nmean ± std over seeds:\n")
        print("| selection | coverage radius | image AUROC | pixel AUROC | AUPRO |")
        print("|---|---|---|---|---|")
        for name in ("defectlens exact (pivots=0)", "defectlens partitioned (pivots=1000)"):
            values = np.array([r[3:] for r in rows if r[0] == name])
            cells = " | ".join(
                f"{m:.4f} ± {s:.4f}" for m, s in zip(values.mean(0), values.std(0), strict=True)
            )
            print(f"| {name} | {cells} |")
    print(f"\nexact mode picks the same {target} centres as the textbook loop (seed {args.seeds[0]}): {same}")

    if args.skip_full:
        return
    full = embed(splits.train)
    fast = KCenterGreedy(ratio=args.ratio, projection_dim=128, pivots=DEFAULT_PIVOTS, seed=args.seeds[0])
    start = time.perf_counter()
    chosen = fast.select(full)
    print(
        f"\nwhole training set: {len(full)} patches -> {len(chosen)} centres "
        f"in {time.perf_counter() - start:.1f} s "
        f"(partitioned, ratio {args.ratio}); coverage radius {coverage(full, full[chosen]):.3f}"
    )


if __name__ == "__main__":
    main()
