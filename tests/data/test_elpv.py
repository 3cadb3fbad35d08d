"""ELPV demo split; reads the installed ``elpv-dataset`` package (fast: labels.csv only)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from defectlens.data import elpv
from defectlens.data.elpv import elpv_uncertain, load_elpv
from defectlens.data.inputs import ImageDataset
from defectlens.data.transforms import Resize
from defectlens.errors import ConfigError, DataError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("elpv_dataset") is None, reason="elpv-dataset is not installed"
)

# SPLIT.md "Exact split sizes": (train before carving val, test good, test defective, p=1/3, p=2/3)
SIZES = {
    "mono": (471, 117, 313, 117, 56),
    "poly": (736, 184, 402, 178, 50),
    "both": (1207, 301, 715, 295, 106),
}
MONO_TEST_GOOD_HEAD = [396, 448, 503, 508, 900, 912, 919, 924, 925, 933]


@pytest.fixture(autouse=True)
def _fresh_cache():
    elpv._table.cache_clear()
    elpv._split.cache_clear()
    yield
    elpv._table.cache_clear()
    elpv._split.cache_clear()


@pytest.mark.parametrize("cell_type", ["mono", "poly", "both"])
def test_counts(cell_type: str) -> None:
    n_train, n_good, n_bad, n_third, n_two_thirds = SIZES[cell_type]
    splits = load_elpv(cell_type)
    assert len(splits.train) + len(splits.val) == n_train
    assert len(splits.val) > 0
    assert sum(r.label == 0 and r.defect_type == "good" for r in splits.test) == n_good
    assert sum(r.label == 1 and r.defect_type == "defective" for r in splits.test) == n_bad
    assert len(splits.test) == n_good + n_bad
    assert splits.has_masks is False and all(r.mask_path is None for r in splits.test)
    uncertain = elpv_uncertain(cell_type)
    assert set(uncertain) == {"p=1/3", "p=2/3"}
    assert (len(uncertain["p=1/3"]), len(uncertain["p=2/3"])) == (n_third, n_two_thirds)
    assert all(r.label == 1 and r.defect_type == key for key, recs in uncertain.items() for r in recs)


def test_mono_val_size_and_disjoint() -> None:
    splits = load_elpv("mono", val_fraction=0.1)
    assert (len(splits.train), len(splits.val)) == (424, 47)
    sets = [{r.path for r in s} for s in (splits.train, splits.val, splits.test)]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    uncertain = {r.path for recs in elpv_uncertain("mono").values() for r in recs}
    assert not uncertain & (sets[0] | sets[1] | sets[2])


def test_test_good_matches_reference_indices() -> None:
    good = [r for r in load_elpv("mono").test if r.label == 0]
    indices = [int(r.path.stem.removeprefix("cell")) - 1 for r in good]
    assert indices[:10] == MONO_TEST_GOOD_HEAD
    assert all(r.path.is_file() and "elpv_dataset" in r.path.parts for r in good)


def test_deterministic_and_seed_only_moves_val() -> None:
    a, b = load_elpv("poly", seed=5), load_elpv("poly", seed=5)
    assert a == b
    c = load_elpv("poly", seed=6)
    assert a.test == c.test
    assert {r.path for r in a.train + a.val} == {r.path for r in c.train + c.val}
    assert a.val != c.val
    assert load_elpv("poly", val_fraction=0.0).val == []


def test_both_is_union() -> None:
    mono, poly, both = load_elpv("mono"), load_elpv("poly"), load_elpv("both")
    for split in ("train", "val", "test"):
        assert set(getattr(both, split)) == set(getattr(mono, split)) | set(getattr(poly, split))


def test_sorted() -> None:
    splits = load_elpv("both")
    for records in (splits.train, splits.val, splits.test):
        assert [r.path for r in records] == sorted(r.path for r in records)


def test_reads_installed_image() -> None:
    splits = load_elpv("mono")
    defective = [r for r in splits.test if r.label == 1]
    sample = ImageDataset(defective[:1], Resize(64))[0]
    assert sample.image.shape == (3, 64, 64)
    assert sample.geometry.original_size == (300, 300)
    assert torch.equal(sample.image[0], sample.image[1])  # greyscale cells
    assert sample.mask is None  # anomalous, no mask


@pytest.mark.parametrize("bad", ["mixed", "", None, "MONO"])
def test_bad_cell_type(bad) -> None:
    with pytest.raises(ConfigError, match="cell_type") as info:
        load_elpv(bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ConfigError, match="cell_type"):
        elpv_uncertain(bad)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_bad_val_fraction(value: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        load_elpv("mono", val_fraction=value)


def test_split_checksum_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(elpv._TEST_GOOD_SHA256, "mono", "0" * 64)
    with pytest.raises(DataError, match="does not match"):
        load_elpv("mono")


def test_split_checksum_detects_stream_change(monkeypatch: pytest.MonkeyPatch) -> None:
    real = np.random.default_rng
    monkeypatch.setattr(elpv.np.random, "default_rng", lambda seed=None: real(12345))
    with pytest.raises(DataError, match="sha256"):
        load_elpv("poly")


def test_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        elpv.importlib.util, "find_spec", lambda name, *a: None if name == "elpv_dataset" else real(name, *a)
    )
    with pytest.raises(DataError, match="pip install elpv-dataset"):
        load_elpv("mono")
