"""PatchCore coreset: textbook greedy vs our exact and partitioned selection, on real MTD patches.

1. On a subset where the textbook loop is affordable: time the textbook loop, our exact mode
   (`pivots=0`) and the default partitioned mode; check that exact mode picks the very same centres;
   compare the coverage radius and the test AUROC of the resulting memory banks.
2. On the whole training set: time the partitioned selection at the default ratio 0.1.

    python benchmarks/coreset.py --data ../shared/data/mtd/magnetic_tile --subset-images 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from defectlens import load_mvtec, metrics
from defectlens.data.inputs import as_dataset, loader
from defectlens.models import create
from defectlens.models.patchcore.distances import pairwise_distances
from defectlens.models.patchcore.sampler import KCenterGreedy


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
    sampler = KCenterGreedy(ratio=args.ratio, projection_dim=128, pivots=0)
    fast = KCenterGreedy(ratio=args.ratio, projection_dim=128)
    target = round(args.ratio * len(subset))
    print(
        f"subset: {args.subset_images} images, {len(subset)} patches x {subset.shape[1]} dims, "
        f"{target} centres\n"
    )

    projected = sampler.project(subset)
    start = time.perf_counter()
    reference = textbook(projected, target, sampler.first_index(len(subset)))
    t_textbook = time.perf_counter() - start
    start = time.perf_counter()
    exact = sampler.select(subset)
    t_exact = time.perf_counter() - start
    start = time.perf_counter()
    partitioned = fast.select(subset)
    t_partitioned = time.perf_counter() - start
    same = torch.equal(exact, reference)

    test_records = splits.test
    labels = np.array([r.label for r in test_records])
    rows = []
    for name, seconds, chosen in [
        ("textbook greedy (1 centre / iteration)", t_textbook, reference),
        ("defectlens exact (pivots=0)", t_exact, exact),
        ("defectlens partitioned (pivots=1000, default)", t_partitioned, partitioned),
    ]:
        module.memory_bank = subset[chosen]
        scores, maps, masks = [], [], []
        with torch.inference_mode():
            for batch in loader(as_dataset(test_records, detector.input_resize), 8):
                batch_scores, batch_maps = module(batch.images)
                scores.append(batch_scores.numpy())
                maps += list(batch_maps.numpy())
                masks += [m.numpy() for m in batch.masks]
        result = metrics.evaluate(labels, np.concatenate(scores), 0.0, masks, maps)
        rows.append(
            (name, seconds, coverage(subset, subset[chosen]), result["image_auroc"], result["pixel_auroc"])
        )

    print("| selection | seconds | coverage radius (152-d) | image AUROC | pixel AUROC |")
    print("|---|---|---|---|---|")
    for name, seconds, radius, image_auroc, pixel_auroc in rows:
        print(f"| {name} | {seconds:.1f} | {radius:.3f} | {image_auroc:.4f} | {pixel_auroc:.4f} |")
    print(f"\nexact mode picks the same {target} centres as the textbook loop: {same}")

    full = embed(splits.train)
    start = time.perf_counter()
    chosen = fast.select(full)
    print(
        f"\nwhole training set: {len(full)} patches -> {len(chosen)} centres "
        f"in {time.perf_counter() - start:.1f} s "
        f"(partitioned, ratio {args.ratio}); coverage radius {coverage(full, full[chosen]):.3f}"
    )


if __name__ == "__main__":
    main()
