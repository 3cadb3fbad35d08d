"""PatchCore's module: exact tiled nearest neighbours and the paper's image-score re-weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from defectlens.models.patchcore.torch_model import PatchCoreModel


class Identity(torch.nn.Module):
    def forward(self, x):
        return [x]


def model(bank: torch.Tensor, chunk: int = 3, neighbours: int = 2, queries: int = 4) -> PatchCoreModel:
    return PatchCoreModel(
        Identity(), bank, num_neighbors=neighbours, blur_sigma=0.0, query_chunk=queries, bank_chunk=chunk
    )


@pytest.mark.parametrize("query_chunk", [1, 6, 7, 1000])
def test_nearest_distances_match_brute_force_across_tiles(query_chunk):
    # 50 bank rows in blocks of 7 (the last one short), 3 images x 13 patches in tiles of various sizes.
    bank, patches = torch.randn(50, 5), torch.randn(3, 13, 5)
    distances = model(bank, chunk=7, queries=query_chunk).nearest_distances(patches)
    expected = torch.cdist(patches, bank[None].expand(3, -1, -1)).amin(-1)
    torch.testing.assert_close(distances, expected, atol=1e-4, rtol=1e-4)


def test_scores_do_not_depend_on_the_batch():
    bank, images = torch.randn(40, 3), torch.randn(5, 3, 6, 6)
    m = model(bank, chunk=9, queries=8)
    scores, maps = m(images)
    alone = [m(image[None]) for image in images]
    torch.testing.assert_close(scores, torch.cat([s for s, _ in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps, torch.cat([a for _, a in alone]), atol=1e-5, rtol=1e-5)


def test_reweighting_by_hand():
    # Bank: m* = (0, 0) and its neighbour (1, 0). The worst test patch is (0, 2): s* = 2.
    # Distances to N_b(m*) = {m*, (1,0)}: 2 and sqrt(5). w = 1 - e^2 / (e^2 + e^sqrt5).
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]])
    patches = torch.tensor([[[0.0, 2.0], [0.0, 0.5]]])
    m = model(bank)
    score = m.reweighted_scores(patches, m.nearest_distances(patches))
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


def test_traced_and_onnx_graphs_keep_a_free_batch_size_across_tiles(tmp_path):
    # Traced with 2 images: 4 patches per tile (query_chunk 8), 9 tiles of 36 patches; run with 5 images.
    onnxruntime = pytest.importorskip("onnxruntime")
    generator = torch.Generator().manual_seed(0)
    bank, images = torch.randn(30, 3, generator=generator), torch.randn(5, 3, 6, 6, generator=generator)
    m = model(bank, chunk=7, queries=8).eval()
    with torch.inference_mode():
        expected_scores, expected_maps = m(images)
        traced = torch.jit.trace(m, images[:2], check_trace=False)
        scores, maps = traced(images)
    torch.testing.assert_close(scores, expected_scores)
    torch.testing.assert_close(maps, expected_maps)
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        m, (images[:2],), str(path), input_names=["x"], dynamic_axes={"x": {0: "b"}}, dynamo=False
    )
    scores, maps = onnxruntime.InferenceSession(str(path)).run(None, {"x": images.numpy()})
    np.testing.assert_allclose(scores, expected_scores.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(maps, expected_maps.numpy(), rtol=1e-4, atol=1e-4)
