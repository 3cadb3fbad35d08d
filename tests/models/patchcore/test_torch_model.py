"""PatchCore's module: exact chunked nearest neighbours and the paper's image-score re-weighting."""

from __future__ import annotations

import math

import pytest
import torch

from defectlens.models.patchcore.torch_model import PatchCoreModel


class Identity(torch.nn.Module):
    def forward(self, x):
        return [x]


def model(bank: torch.Tensor, chunk: int = 3, neighbours: int = 2) -> PatchCoreModel:
    return PatchCoreModel(Identity(), bank, num_neighbors=neighbours, blur_sigma=0.0, bank_chunk=chunk)


def test_nearest_matches_brute_force_across_chunks():
    bank, queries = torch.randn(50, 5), torch.randn(40, 5)
    distances, index = model(bank, chunk=7).nearest(queries)
    expected = torch.cdist(queries, bank)
    torch.testing.assert_close(distances, expected.min(1).values, atol=1e-4, rtol=1e-4)
    assert torch.equal(index, expected.argmin(1))


def test_reweighting_by_hand():
    # Bank: m* = (0, 0) and its neighbour (1, 0). The worst test patch is (0, 2): s* = 2.
    # Distances to N_b(m*) = {m*, (1,0)}: 2 and sqrt(5). w = 1 - e^2 / (e^2 + e^sqrt5).
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]])
    patches = torch.tensor([[[0.0, 2.0], [0.0, 0.5]]])
    m = model(bank)
    distances, index = m.nearest(patches[0])
    score = m.reweighted_scores(patches, distances[None], index[None])
    weight = 1 - math.exp(2) / (math.exp(2) + math.exp(math.sqrt(5)))
    assert score.item() == pytest.approx(weight * 2, rel=1e-5)


def test_forward_shapes_and_map_is_patch_distance_upsampled():
    bank = torch.zeros(4, 3)
    images = torch.zeros(2, 3, 8, 8)
    images[1, :, 2, 3] = 1.0  # one odd pixel in the second image
    scores, maps = model(bank)(images)
    assert scores.shape == (2,) and maps.shape == (2, 8, 8)
    assert scores[0] == 0 and scores[1] > 0  # 3x3 local averaging spreads the pixel over its neighbours
    assert maps[1, 2, 3] == maps[1].max() and maps[1, 6, 6] == 0
