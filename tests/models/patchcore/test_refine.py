"""PatchCore's in-graph approximate search ("refine"): its bounds, the coarse-first bank and export parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlens import load_mvtec
from defectlens.export.exporter import export_detector
from defectlens.inference.inferencer import Inferencer
from defectlens.models.patchcore.torch_model import PatchCoreModel
from defectlens.models.tiling import tile_module_of


class Identity(torch.nn.Module):
    def forward(self, x):
        return [x]


def refine(bank: torch.Tensor, coarse_ratio: float, refine_patches: int) -> PatchCoreModel:
    return PatchCoreModel(
        Identity(),
        bank,
        blur_sigma=0.0,
        bank_chunk=7,
        search="refine",
        coarse_ratio=coarse_ratio,
        refine_patches=refine_patches,
    )


def brute_force(patches: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    return torch.cdist(patches, bank[None].expand(len(patches), -1, -1)).amin(-1)


def test_refined_patches_are_exact_and_the_rest_bounded_by_the_coarse_rows():
    bank, patches = torch.randn(100, 6), torch.randn(3, 40, 6)
    distances = refine(bank, coarse_ratio=0.2, refine_patches=5).nearest_distances(patches)
    exact, coarse = brute_force(patches, bank), brute_force(patches, bank[:20])
    farthest = coarse.topk(5, dim=1).indices
    torch.testing.assert_close(distances.gather(1, farthest), exact.gather(1, farthest), atol=1e-4, rtol=1e-4)
    others = torch.ones_like(distances, dtype=torch.bool).scatter(1, farthest, False)
    torch.testing.assert_close(distances[others], coarse[others], atol=1e-4, rtol=1e-4)
    assert (distances >= exact - 1e-4).all()


def test_the_farthest_patch_and_so_the_image_score_are_exact():
    bank, patches = torch.randn(200, 4), torch.randn(2, 30, 4)
    patches[:, 7] += 20.0  # one defect-like patch per image, far from every bank row
    approximate, exact = refine(bank, 0.1, 3), PatchCoreModel(Identity(), bank, blur_sigma=0.0)
    distances = approximate.nearest_distances(patches)
    torch.testing.assert_close(distances[:, 7], brute_force(patches, bank)[:, 7], atol=1e-4, rtol=1e-4)
    scores = approximate.reweighted_scores(patches, distances)
    expected = exact.reweighted_scores(patches, exact.nearest_distances(patches))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("coarse_ratio", "refine_patches"), [(1.0, 3), (0.1, 40)])
def test_a_stage_that_covers_everything_is_exact_search(coarse_ratio, refine_patches):
    bank, patches = torch.randn(50, 5), torch.randn(2, 40, 5)
    distances = refine(bank, coarse_ratio, refine_patches).nearest_distances(patches)
    torch.testing.assert_close(distances, brute_force(patches, bank), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def refined(tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    return quick("patchcore", search="refine", coarse_ratio=0.2, refine_patches=8).fit(splits), splits


def test_the_bank_starts_with_a_greedy_coreset_of_itself(refined):
    # The coarse rows cover the bank more tightly than any random subset of their size does.
    bank = tile_module_of(refined[0].module_).memory_bank
    coarse_rows = round(0.2 * len(bank))
    assert 8 < coarse_rows < len(bank)

    def radius(rows: torch.Tensor) -> float:
        return float(torch.cdist(bank, rows).amin(1).max())

    generator = torch.Generator().manual_seed(0)
    random_radii = [
        radius(bank[torch.randperm(len(bank), generator=generator)[:coarse_rows]]) for _ in range(5)
    ]
    assert radius(bank[:coarse_rows]) < min(random_radii)


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "torchscript"])
def test_exports_run_the_same_approximate_search(refined, fmt, tmp_path):
    detector, splits = refined
    out = export_detector(detector, tmp_path / fmt, fmt)  # its own parity check passed
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    exported_scores, exported_maps = Inferencer(out).score_batch(images.numpy())
    module = detector.export_module()
    with torch.inference_mode():
        scores, maps = module(images)
        tile_module_of(module).search = "exact"
        exact_scores, exact_maps = module(images)
    np.testing.assert_allclose(exported_scores, scores.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exported_maps, maps.numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(exact_maps.numpy(), maps.numpy(), atol=1e-3)  # the graph did approximate
