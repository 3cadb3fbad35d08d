import pytest
import torch

from defectlens.errors import ConfigError
from defectlens.models.patchcore.distances import pairwise_distances
from defectlens.models.patchcore.sampler import DEFAULT_PIVOTS, KCenterGreedy


def naive_k_center(points: torch.Tensor, target: int, start: int) -> list[int]:
    """The textbook loop: one centre per iteration, every point updated each time."""
    min_dist = torch.cdist(points, points[start : start + 1]).squeeze(1)
    chosen = [start]
    while len(chosen) < target:
        nxt = int(min_dist.argmax())
        chosen.append(nxt)
        min_dist = torch.minimum(min_dist, torch.cdist(points, points[nxt : nxt + 1]).squeeze(1))
    return chosen


@pytest.mark.parametrize("candidates", [1, 7, 64, 4096])
def test_selection_equals_textbook_greedy(candidates):
    # Clustered data, like patch features: the pruning and batching must not change a single choice.
    generator = torch.Generator().manual_seed(1)
    centres = torch.randn(20, 24, generator=generator) * 5
    features = centres[torch.randint(20, (1500,), generator=generator)] + torch.randn(
        1500, 24, generator=generator
    )
    sampler = KCenterGreedy(
        ratio=0.1, projection_dim=16, pivots=0, candidates=candidates, seed=3, chunk_size=100
    )
    expected = naive_k_center(sampler.project(features), 150, sampler.first_index(1500))
    assert sampler.select(features).tolist() == expected


def test_ratio_sets_size_and_indices_are_unique():
    features = torch.randn(1000, 8)
    chosen = KCenterGreedy(ratio=0.05, projection_dim=0).select(features)
    assert len(chosen) == 50
    assert len(set(chosen.tolist())) == 50


def test_full_ratio_keeps_everything_and_tiny_ratio_keeps_one():
    features = torch.randn(30, 4)
    assert KCenterGreedy(ratio=1.0).select(features).tolist() == list(range(30))
    assert len(KCenterGreedy(ratio=0.001).select(features)) == 1


def test_duplicates_do_not_stall_selection():
    features = torch.cat([torch.zeros(500, 4), torch.ones(500, 4)])
    chosen = KCenterGreedy(ratio=0.01, projection_dim=0).select(features)
    assert len(chosen) == 10  # after the two distinct points, ties at distance 0 are still picked


def test_projection_is_seeded_and_skipped_when_not_smaller():
    features = torch.randn(10, 32)
    assert torch.equal(
        KCenterGreedy(projection_dim=8, seed=2).project(features),
        KCenterGreedy(projection_dim=8, seed=2).project(features),
    )
    assert KCenterGreedy(projection_dim=64).project(features).shape == (10, 32)


def test_pairwise_distances_match_cdist():
    a, b = torch.randn(50, 6), torch.randn(40, 6)
    assert torch.allclose(pairwise_distances(a, b), torch.cdist(a, b), atol=1e-4)


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5])
def test_bad_ratio_is_named(ratio):
    with pytest.raises(ConfigError, match=r"coreset_ratio must be in \(0, 1\]"):
        KCenterGreedy(ratio=ratio).select(torch.randn(10, 3))


def test_default_selection_is_exact_while_cheap_then_partitioned():
    sampler = KCenterGreedy(exact_work=1e6)
    assert sampler.pivots_for(3000, 300) == 0  # 9e5 point x centre pairs: exact
    assert sampler.pivots_for(4000, 400) == DEFAULT_PIVOTS  # 1.6e6: partitioned
    assert KCenterGreedy(pivots=5, exact_work=1e6).pivots_for(4000, 400) == 5  # an explicit choice wins
    features = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    exact = KCenterGreedy(ratio=0.1, pivots=0).select(features)
    assert torch.equal(KCenterGreedy(ratio=0.1).select(features), exact)
    assert not torch.equal(KCenterGreedy(ratio=0.1, pivots=20).select(features), exact)


@pytest.mark.parametrize("pivots", [-1, 2.5, "many"])
def test_bad_pivots_are_named(pivots):
    with pytest.raises(ConfigError, match="pivots must be a non-negative integer"):
        KCenterGreedy(pivots=pivots).select(torch.randn(10, 3))
