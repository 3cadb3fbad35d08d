"""PatchCore's nearest-neighbour search on real MTD: exact (tiled) against the approximate IVF index.

Loads a fitted PatchCore (e.g. from `benchmarks/run.py --save-models runs/bench`), embeds every test
image once, then scores the same patches with each search and reports the search's own speed, how often
and by how much it misses the exact nearest distance, and the test metrics. faiss's HNSW graph is timed
beside it as a reference for the choice of IVF (it is not offered by the library).

    python benchmarks/patchcore_search.py --model runs/bench/magnetic_tile-patchcore.pt \\
        --data ../shared/data/mtd/magnetic_tile
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from patchcore_eval import EmbeddedTestSet

from defectlens import load_mvtec
from defectlens.models import load
from defectlens.models.patchcore.ivf import InvertedFileIndex, require_faiss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a saved PatchCore detector (.pt)")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout category with masks")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss = require_faiss()

    detector = load(args.model)
    module = detector.module_.eval()
    test = EmbeddedTestSet.embed(module, load_mvtec(args.data).test, detector.input_resize)
    bank = module.memory_bank
    print(
        f"{args.model}: bank {tuple(bank.shape)}, {len(test.patches)} test images x "
        f"{test.patches.shape[1]} patches, {torch.get_num_threads()} threads\n"
    )

    module.search = "exact"
    exact, exact_ips = test.nearest(module.nearest_distances)
    rows = [("exact (tiled)", "", exact_ips, exact)]
    for cells in (512, 1024, 2048):
        for probes in (8, 16, 32):
            index = InvertedFileIndex(bank, cells, probes)
            found, ips = test.nearest(
                lambda p, index=index: index.distances(p.flatten(0, 1)).view(len(p), -1)
            )
            rows.append(("IVF (library)", f"{cells} cells, {probes} probes", ips, found))
    faiss.omp_set_num_threads(args.threads)
    graph = faiss.IndexHNSWFlat(bank.shape[1], 32)
    graph.add(np.ascontiguousarray(bank.numpy()))
    for ef in (32, 64):
        graph.hnsw.efSearch = ef

        def hnsw(p: torch.Tensor) -> torch.Tensor:
            squared, _ = graph.search(np.ascontiguousarray(p.flatten(0, 1).numpy()), 1)
            return torch.from_numpy(squared[:, 0]).clamp_min_(0).sqrt_().view(len(p), -1)

        found, ips = test.nearest(hnsw)
        rows.append(("HNSW (reference)", f"M 32, efSearch {ef}", ips, found))

    print(
        "| search | settings | search img/s | patches not exact | max overestimate | image AUROC "
        "| pixel AUROC | AUPRO |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, settings, ips, distances in rows:
        error = distances - exact
        result = test.evaluate(module, distances)
        print(
            f"| {name} | {settings} | {ips:.1f} | {float((error > 1e-3).float().mean()):.2%} | "
            f"{float(error.max()):.2f} | {result['image_auroc']:.4f} | {result['pixel_auroc']:.4f} | "
            f"{result['aupro']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
