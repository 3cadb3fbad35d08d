"""PatchCore's optional approximate search (faiss IVF): exactness limits, rebuilds, export and errors."""

from __future__ import annotations

import copy
import pickle
import sys

import numpy as np
import pytest
import torch

from defectlens import load_mvtec
from defectlens.errors import ConfigError
from defectlens.export.exporter import export_detector
from defectlens.inference.inferencer import Inferencer
from defectlens.models.patchcore.ivf import InvertedFileIndex
from defectlens.models.patchcore.torch_model import PatchCoreModel

pytest.importorskip("faiss", reason="faiss-cpu is an optional dependency (defectlens[faiss])")


class Identity(torch.nn.Module):
    def forward(self, x):
        return [x]


def module(bank: torch.Tensor, cells: int, probes: int) -> PatchCoreModel:
    return PatchCoreModel(Identity(), bank, blur_sigma=0.0, search="ivf", ivf_cells=cells, ivf_probes=probes)


def brute_force(patches: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    return torch.cdist(patches, bank[None].expand(len(patches), -1, -1)).amin(-1)


def test_visiting_every_cell_is_exact():
    bank, patches = torch.randn(300, 8), torch.randn(2, 50, 8)
    distances = module(bank, cells=20, probes=20).nearest_distances(patches)
    torch.testing.assert_close(distances, brute_force(patches, bank), atol=1e-4, rtol=1e-4)


def test_few_probes_never_underestimate_and_are_mostly_exact():
    generator = torch.Generator().manual_seed(0)
    bank, patches = torch.randn(2000, 8, generator=generator), torch.randn(4, 100, 8, generator=generator)
    approximate = module(bank, cells=64, probes=8).nearest_distances(patches)
    exact = brute_force(patches, bank)
    assert bool((approximate >= exact - 1e-4).all())  # it only ever misses a closer row
    assert float((approximate - exact < 1e-4).float().mean()) > 0.8


def test_cells_are_centred_on_the_first_bank_rows():
    # Two far clusters; the first two rows (one per cluster) are the cell centres, one probe suffices.
    bank = torch.cat([torch.tensor([[0.0, 0.0], [20.0, 20.0]]), torch.randn(50, 2), torch.randn(50, 2) + 20])
    index = InvertedFileIndex(bank, cells=2, probes=1)
    queries = torch.tensor([[0.1, 0.1], [19.0, 19.0]])
    torch.testing.assert_close(
        index.distances(queries), torch.cdist(queries, bank).amin(1), atol=1e-3, rtol=0
    )


def test_index_follows_a_new_memory_bank_and_copies_drop_it():
    m = module(torch.zeros(10, 3), cells=4, probes=4)
    patches = torch.ones(1, 2, 3)
    assert torch.allclose(m.nearest_distances(patches), torch.full((1, 2), 3**0.5))
    m.memory_bank = torch.ones(10, 3)  # as PatchCore.extend replaces it
    assert torch.allclose(m.nearest_distances(patches), torch.zeros(1, 2))
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone._ivf is None
        assert torch.allclose(clone.nearest_distances(patches), torch.zeros(1, 2))


def test_traced_graph_searches_exactly():
    generator = torch.Generator().manual_seed(1)
    bank, images = torch.randn(500, 3, generator=generator), torch.randn(2, 3, 8, 8, generator=generator)
    m = module(bank, cells=50, probes=1)
    exact = PatchCoreModel(Identity(), bank, blur_sigma=0.0)
    with torch.inference_mode():
        traced = torch.jit.trace(m, images, check_trace=False)
        torch.testing.assert_close(traced(images)[1], exact(images)[1])
        assert not torch.allclose(m(images)[1], exact(images)[1])  # the eager module did approximate


def test_export_of_an_ivf_detector_searches_exactly(quick, tiny_mvtec, tmp_path):
    detector = quick("patchcore", search="ivf", ivf_cells=64, ivf_probes=2).fit(
        load_mvtec(tiny_mvtec, val_fraction=0.25)
    )
    out = export_detector(detector, tmp_path / "onnx", "onnx")  # its parity check compares exact to exact
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    exported, _ = Inferencer(out).score_batch(images.numpy())
    with torch.inference_mode():
        exact, _ = detector.export_module()(images)
    np.testing.assert_allclose(exported, exact.numpy(), rtol=1e-4, atol=1e-4)
    assert detector.module_.search == "ivf"  # exporting did not switch the fitted model


def test_settings_are_checked(quick):
    with pytest.raises(ConfigError, match="search must be one of"):
        quick("patchcore", search="hnsw").check_params()
    with pytest.raises(ConfigError, match="ivf_probes must be a positive integer"):
        quick("patchcore", search="ivf", ivf_probes=0).check_params()


def test_missing_faiss_says_how_to_install(quick, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(ConfigError, match="pip install faiss-cpu"):
        quick("patchcore", search="ivf").check_params()


def test_flops_of_the_faiss_search_are_counted():
    from defectlens.models.complexity import measure

    bank, cells = torch.randn(2000, 3), 50
    visit_all = module(bank, cells=cells, probes=cells)
    patches = torch.randn(1, 64 * 64, 3)
    visit_all.nearest_distances(patches)
    # Every query is compared with the 50 cell centres, then with all 2,000 rows: 2 D FLOPs each.
    assert visit_all.untracked_flops() == 2 * 3 * 64 * 64 * (cells + 2000)
    exact = PatchCoreModel(Identity(), bank, blur_sigma=0.0)
    assert exact.untracked_flops() == 0.0
    # measure() adds it to torch's count: the same work as exact search's matrix product, within rounding.
    ivf_gflops, exact_gflops = measure(visit_all, (64, 64)).gflops, measure(exact, (64, 64)).gflops
    assert exact_gflops > 0.04
    assert ivf_gflops == pytest.approx(exact_gflops + 2 * 3 * 64 * 64 * cells / 1e9, abs=2e-3)
