"""PatchCore's nearest-neighbour search on real MTD: exact (tiled) against the approximate ones.

Loads a fitted PatchCore (e.g. from `benchmarks/run.py --save-models runs/bench`), embeds every test
image once, then scores the same patches with each search and reports the search's own speed, how often
and by how much it misses the exact nearest distance, and the test metrics. The searches: "refine" (the
in-graph two-stage search, over a grid of its two settings), faiss's IVF index (the library's "ivf"),
faiss's HNSW graph as a reference (not offered by the library), and "project", a candidate not in the
library: every patch against the whole bank in the bank's first `--project-dims` principal components, then
the exact distance to its `--rerank` nearest rows there (exact when its true neighbour is among them, an
overestimate otherwise; only tensor operations, so a graph could hold it).

    python benchmarks/patchcore_search.py --model runs/bench/magnetic_tile-patchcore.pt \\
        --data ../shared/data/mtd/magnetic_tile --searches refine ivf hnsw
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
from defectlens.models.patchcore.sampler import KCenterGreedy, coarse_first
from defectlens.models.patchcore.torch_model import PatchCoreModel

SEARCHES = ("refine", "ivf", "hnsw", "project")


def hnsw_rows(bank: torch.Tensor, test: EmbeddedTestSet, threads: int) -> list[tuple]:
    """faiss's HNSW graph at two search widths: (name, settings, images/s, distances) rows."""
    faiss = require_faiss()
    faiss.omp_set_num_threads(threads)
    rows = []
    graph = faiss.IndexHNSWFlat(bank.shape[1], 32)
    graph.add(np.ascontiguousarray(bank.numpy()))
    for ef in (32, 64):
        graph.hnsw.efSearch = ef

        def hnsw(p: torch.Tensor) -> torch.Tensor:
            squared, _ = graph.search(np.ascontiguousarray(p.flatten(0, 1).numpy()), 1)
            return torch.from_numpy(squared[:, 0]).clamp_min_(0).sqrt_().view(len(p), -1)

        found, ips = test.nearest(hnsw)
        rows.append(("HNSW (reference)", f"M 32, efSearch {ef}", ips, found))

    return rows


def projected_search(bank: torch.Tensor, dims: int, rerank: int, chunk: int = 256):
    """The "project" candidate as a function of (B, P, D) patches -> (B, P) distances."""
    mean = bank.mean(0)
    _, _, basis = torch.linalg.svd(bank - mean, full_matrices=False)
    components = basis[:dims].T  # (D, dims)
    projected_bank = (bank - mean) @ components
    bank_sq = (projected_bank * projected_bank).sum(1)

    def search(patches: torch.Tensor) -> torch.Tensor:
        queries = patches.flatten(0, 1)
        found = []
        for block in queries.split(chunk):
            projected = (block - mean) @ components
            approximate = torch.addmm(bank_sq, projected, projected_bank.T, alpha=-2.0)
            candidates = approximate.topk(rerank, dim=1, largest=False).indices  # (chunk, rerank)
            exact = torch.linalg.vector_norm(block[:, None] - bank[candidates], dim=-1)
            found.append(exact.amin(1))
        return torch.cat(found).view(len(patches), -1)

    return search


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a saved PatchCore detector (.pt)")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout category with masks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--searches", nargs="+", choices=SEARCHES, default=list(SEARCHES))
    parser.add_argument("--coarse-ratios", nargs="+", type=float, default=[0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--refine-patches", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--project-dims", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--rerank", nargs="+", type=int, default=[1, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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
    if "refine" in args.searches:
        for ratio in args.coarse_ratios:
            ordered = coarse_first(bank, KCenterGreedy(ratio, detector.projection_dim, seed=detector.seed))
            for patches in args.refine_patches:
                refined = PatchCoreModel(
                    module.extractor, ordered, search="refine", coarse_ratio=ratio, refine_patches=patches
                )
                found, ips = test.nearest(refined.nearest_distances)
                rows.append(("refine (in graph)", f"coarse {ratio:g}, {patches} patches", ips, found))
    if "ivf" in args.searches:
        for cells in (512, 1024, 2048):
            for probes in (8, 16, 32):
                index = InvertedFileIndex(bank, cells, probes)
                found, ips = test.nearest(
                    lambda p, index=index: index.distances(p.flatten(0, 1)).view(len(p), -1)
                )
                rows.append(("IVF (library)", f"{cells} cells, {probes} probes", ips, found))
    if "hnsw" in args.searches:
        rows += hnsw_rows(bank, test, args.threads)
    if "project" in args.searches:
        for dims in args.project_dims:
            for rerank in args.rerank:
                found, ips = test.nearest(projected_search(bank, dims, rerank))
                rows.append(("project (candidate)", f"{dims} dims, re-rank {rerank}", ips, found))
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
