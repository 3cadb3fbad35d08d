from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from defectlens.data.datasets import (
    DataSplits,
    Record,
    load_folder,
    load_mvtec,
    records_from_paths,
)
from defectlens.data.inputs import Batch, ImageDataset, Sample, collate
from defectlens.data.transforms import Geometry, Resize
from defectlens.errors import ConfigError, DataError


def _names(records: list[Record]) -> list[str]:
    return [r.path.name for r in records]


# --- MVTec layout ---------------------------------------------------------------------------------


def test_mvtec_counts_labels_and_masks(mvtec_root: Path) -> None:
    splits = load_mvtec(mvtec_root, val_fraction=0.2, seed=0)
    assert isinstance(splits, DataSplits)
    assert splits.root == mvtec_root
    assert len(splits.train) == 8 and len(splits.val) == 2
    assert all(
        r.label == 0 and r.defect_type == "good" and r.mask_path is None for r in splits.train + splits.val
    )
    # the stray *_mask.png, the hidden file and the text file are not images
    assert not any(
        n.endswith(("_mask.png", ".txt")) or n.startswith(".") for n in _names(splits.train + splits.val)
    )
    assert len(splits.test) == 6
    by_name = {r.path.name: r for r in splits.test}
    assert [by_name[f"g{i}.png"].label for i in range(3)] == [0, 0, 0]
    assert by_name["g0.png"].defect_type == "good" and by_name["g0.png"].mask_path is None
    odd = by_name["a.b_01.png"]
    assert (odd.label, odd.defect_type) == (1, "crack")
    assert odd.mask_path == mvtec_root / "ground_truth" / "crack" / "a.b_01_mask.png"
    assert by_name["002.jpg"].mask_path == mvtec_root / "ground_truth" / "crack" / "002_mask.png"
    assert by_name["h1.bmp"].defect_type == "hole"
    assert splits.has_masks is True
    for records in (splits.train, splits.val, splits.test):
        assert [r.path for r in records] == sorted(r.path for r in records)


def test_mvtec_summary(mvtec_root: Path) -> None:
    text = load_mvtec(mvtec_root).summary()
    lines = text.splitlines()
    assert lines[0].startswith("train: 9 images (good 9)")
    assert lines[1].startswith("val:") and "good 1" in lines[1]
    assert lines[2] == "test:  6 images (good 3, crack 2, hole 1)"
    assert "masks: yes" in text


def test_mvtec_val_split_deterministic_and_disjoint(mvtec_root: Path) -> None:
    a = load_mvtec(mvtec_root, val_fraction=0.3, seed=3)
    b = load_mvtec(mvtec_root, val_fraction=0.3, seed=3)
    assert a.train == b.train and a.val == b.val
    train, val = {r.path for r in a.train}, {r.path for r in a.val}
    assert len(val) == 3 and not train & val
    assert len(train | val) == 10
    seeds = {tuple(r.path for r in load_mvtec(mvtec_root, val_fraction=0.3, seed=s).val) for s in range(6)}
    assert len(seeds) > 1  # the seed matters


def test_mvtec_val_fraction_zero(mvtec_root: Path) -> None:
    splits = load_mvtec(mvtec_root, val_fraction=0.0)
    assert splits.val == [] and len(splits.train) == 10


def test_mvtec_val_folder_used(mvtec_root: Path, save_image, rgb) -> None:
    save_image(mvtec_root / "val" / "good" / "v1.png", rgb(40, 40))
    save_image(mvtec_root / "val" / "crack" / "vc.png", rgb(40, 40))
    splits = load_mvtec(mvtec_root, val_fraction=0.5)
    assert len(splits.train) == 10
    assert [(r.path.name, r.label, r.defect_type) for r in splits.val] == [
        ("vc.png", 1, "crack"),
        ("v1.png", 0, "good"),
    ]


def test_mvtec_val_folder_without_good(mvtec_root: Path) -> None:
    (mvtec_root / "val").mkdir()
    with pytest.raises(DataError) as info:
        load_mvtec(mvtec_root)
    assert str(mvtec_root / "val" / "good") in str(info.value)


def test_mvtec_without_ground_truth(mvtec_root: Path) -> None:
    shutil.rmtree(mvtec_root / "ground_truth")
    splits = load_mvtec(mvtec_root)
    assert splits.has_masks is False
    assert all(r.mask_path is None for r in splits.test)
    assert sum(r.label == 1 for r in splits.test) == 3
    assert "masks: none" in splits.summary()


def test_mvtec_missing_mask_names_image_and_expected_mask(mvtec_root: Path) -> None:
    (mvtec_root / "ground_truth" / "crack" / "a.b_01_mask.png").unlink()
    with pytest.raises(DataError) as info:
        load_mvtec(mvtec_root)
    msg = str(info.value)
    assert str(mvtec_root / "test" / "crack" / "a.b_01.png") in msg
    assert str(mvtec_root / "ground_truth" / "crack" / "a.b_01_mask.png") in msg


def test_mvtec_mask_any_suffix_and_plain_stem(mvtec_root: Path, save_image) -> None:
    gt = mvtec_root / "ground_truth" / "crack"
    mask = np.zeros((50, 70), np.uint8)
    (gt / "a.b_01_mask.png").unlink()
    save_image(gt / "a.b_01_mask.bmp", mask)
    (gt / "002_mask.png").rename(gt / "002.png")
    splits = load_mvtec(mvtec_root)
    by_name = {r.path.name: r for r in splits.test}
    assert by_name["a.b_01.png"].mask_path == gt / "a.b_01_mask.bmp"
    assert by_name["002.jpg"].mask_path == gt / "002.png"


def test_mvtec_mask_size_mismatch(mvtec_root: Path, save_image) -> None:
    bad = save_image(mvtec_root / "ground_truth" / "hole" / "h1_mask.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="must match") as info:
        load_mvtec(mvtec_root)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "breakage",
    ["missing_root", "root_is_file", "missing_train_good", "empty_train_good", "missing_test", "empty_test"],
)
def test_mvtec_layout_errors_name_path(mvtec_root: Path, breakage: str) -> None:
    root = mvtec_root
    if breakage == "missing_root":
        root, expected = mvtec_root.parent / "nope", mvtec_root.parent / "nope"
    elif breakage == "root_is_file":
        root = expected = mvtec_root.parent / "file"
        root.write_text("x")
    elif breakage == "missing_train_good":
        shutil.rmtree(root / "train" / "good")
        expected = root / "train" / "good"
    elif breakage == "empty_train_good":
        for p in (root / "train" / "good").iterdir():
            if not p.stem.endswith("_mask"):  # only the stray mask file is left: still no images
                p.unlink()
        expected = root / "train" / "good"
    elif breakage == "missing_test":
        shutil.rmtree(root / "test")
        expected = root / "test"
    else:
        shutil.rmtree(root / "test")
        (root / "test" / "good").mkdir(parents=True)
        expected = root / "test"
    with pytest.raises(DataError) as info:
        load_mvtec(root)
    assert str(expected) in str(info.value)


@pytest.mark.parametrize(
    "where", ["train/good/t003.png", "test/crack/a.b_01.png", "ground_truth/hole/h1_mask.png"]
)
def test_mvtec_unreadable_file_fails_at_load(mvtec_root: Path, where: str) -> None:
    target = mvtec_root / where
    target.write_bytes(b"\x89PNG garbage, not an image")
    with pytest.raises(DataError, match="cannot read image") as info:
        load_mvtec(mvtec_root)
    assert str(target) in str(info.value)
    load_mvtec(mvtec_root, check_files=False)  # without the header check the layout alone loads


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), "0.1", True, None])
def test_mvtec_bad_val_fraction(mvtec_root: Path, value) -> None:
    with pytest.raises(ConfigError, match="val_fraction") as info:
        load_mvtec(mvtec_root, val_fraction=value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed(mvtec_root: Path, seed) -> None:
    with pytest.raises(ConfigError, match="seed"):
        load_mvtec(mvtec_root, seed=seed)


# --- plain folders --------------------------------------------------------------------------------


def test_folder_loader_with_masks(folder_data: dict[str, Path]) -> None:
    d = folder_data
    splits = load_folder(
        d["good"], [d["scratch"], d["dent"]], masks=d["masks"], test_fraction=0.2, val_fraction=0.25
    )
    assert splits.root is None
    assert len(splits.test) == 2 + 3  # 20% of 10 good + 3 abnormal
    assert len(splits.val) == 2 and len(splits.train) == 6  # 25% of the 8 left
    parts = [{r.path for r in s} for s in (splits.train, splits.val, splits.test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    by_name = {r.path.name: r for r in splits.test}
    assert by_name["s.1.png"].mask_path == d["masks"] / "s.1.png"  # <stem>.*
    assert by_name["s.2.png"].mask_path == d["masks"] / "s.2_mask.png"  # <stem>_mask.*
    assert by_name["d1.jpg"].mask_path == d["masks"] / "d1_mask.bmp"
    assert (by_name["d1.jpg"].label, by_name["d1.jpg"].defect_type) == (1, "dent")
    assert by_name["s.1.png"].defect_type == "scratch"
    assert splits.has_masks is True
    again = load_folder(
        d["good"], [d["scratch"], d["dent"]], masks=d["masks"], test_fraction=0.2, val_fraction=0.25
    )
    assert again == splits


def test_folder_missing_mask(folder_data: dict[str, Path]) -> None:
    d = folder_data
    (d["masks"] / "d1_mask.bmp").unlink()
    with pytest.raises(DataError) as info:
        load_folder(d["good"], [d["scratch"], d["dent"]], masks=d["masks"])
    assert str(d["dent"] / "d1.jpg") in str(info.value)


def test_folder_without_masks_and_single_abnormal_path(folder_data: dict[str, Path]) -> None:
    d = folder_data
    splits = load_folder(d["good"], str(d["scratch"]))
    assert sum(r.label == 1 for r in splits.test) == 2
    assert all(r.mask_path is None for r in splits.test)
    assert splits.has_masks is False


def test_folder_good_only(folder_data: dict[str, Path]) -> None:
    splits = load_folder(folder_data["good"])
    assert splits.test and all(r.label == 0 for r in splits.test)
    assert "metrics need anomalies" in splits.summary()


def test_folder_good_test(folder_data: dict[str, Path]) -> None:
    d = folder_data
    splits = load_folder(d["good"], [d["scratch"]], good_test=d["good_test"], val_fraction=0.0)
    assert len(splits.train) == 10 and splits.val == []
    assert sorted(r.path.name for r in splits.test if r.label == 0) == ["gt0.png", "gt1.png"]


def test_folder_errors(folder_data: dict[str, Path], tmp_path: Path) -> None:
    d = folder_data
    missing = tmp_path / "nowhere"
    for kwargs in (
        {"good": missing},
        {"good": d["good"], "abnormal": [missing]},
        {"good": d["good"], "masks": missing},
    ):
        with pytest.raises(DataError) as info:
            load_folder(**kwargs)
        assert str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_folder(empty)
    assert str(empty) in str(info.value)


@pytest.mark.parametrize("name", ["test_fraction", "val_fraction"])
@pytest.mark.parametrize("value", [-0.5, 1.0, 2])
def test_folder_bad_fractions(folder_data: dict[str, Path], name: str, value) -> None:
    with pytest.raises(ConfigError, match=name):
        load_folder(folder_data["good"], **{name: value})


def test_folder_unreadable(folder_data: dict[str, Path]) -> None:
    bad = folder_data["good"] / "ok_03.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError) as info:
        load_folder(folder_data["good"])
    assert str(bad) in str(info.value)


# --- prediction inputs ----------------------------------------------------------------------------


def test_records_from_paths(folder_data: dict[str, Path]) -> None:
    d = folder_data
    single = d["dent"] / "d1.jpg"
    recs = records_from_paths([single, str(d["scratch"]), single])
    assert [r.path.name for r in recs] == ["d1.jpg", "s.1.png", "s.2.png"]
    assert all(r.label == -1 and r.defect_type == "" and r.mask_path is None for r in recs)


def test_records_from_paths_skips_masks_in_folders(folder_data: dict[str, Path], save_image, rgb) -> None:
    save_image(folder_data["scratch"] / "s.1_mask.png", rgb(40, 40))
    assert len(records_from_paths([folder_data["scratch"]])) == 2


def test_records_from_paths_errors(folder_data: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(DataError) as info:
        records_from_paths([folder_data["dent"], missing])
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        records_from_paths([empty])
    assert str(empty) in str(info.value)
    with pytest.raises(DataError):
        records_from_paths([])
    garbage = tmp_path / "g.png"
    garbage.write_bytes(b"nope")
    with pytest.raises(DataError, match="cannot read image") as info:
        records_from_paths([garbage])
    assert str(garbage) in str(info.value)


# --- torch dataset --------------------------------------------------------------------------------


def test_image_dataset_masks(mvtec_root: Path) -> None:
    splits = load_mvtec(mvtec_root, val_fraction=0.0)
    unknown = Record(splits.train[0].path, -1, "")
    no_mask = Record(mvtec_root / "test" / "crack" / "a.b_01.png", 1, "crack")
    records = [*splits.test, unknown, no_mask]
    ds = ImageDataset(records, Resize(64, mode="pad"))
    assert len(ds) == len(records)
    samples = [ds[i] for i in range(len(ds))]
    for s in samples:
        assert isinstance(s, Sample)
        assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.float32
        assert float(s.image.min()) >= 0.0 and float(s.image.max()) <= 1.0
        assert isinstance(s.geometry, Geometry)
    by_path = {(s.path, s.label): s for s in samples}
    good = by_path[(str(mvtec_root / "test" / "good" / "g0.png"), 0)]
    assert good.mask is not None and good.mask.dtype == torch.bool and good.mask.shape == (64, 64)
    assert not good.mask.any()
    crack = by_path[(str(no_mask.path), 1)]
    # the record from the loader has a mask; the hand-made one does not
    with_mask = [s for s in samples if s.path == str(no_mask.path) and s.mask is not None]
    assert len(with_mask) == 1 and with_mask[0].mask.any() and with_mask[0].mask.shape == (64, 64)
    assert with_mask[0].defect_type == "crack"
    assert samples[-1].mask is None and samples[-1].label == 1
    assert samples[-2].mask is None and samples[-2].label == -1 and samples[-2].defect_type == ""
    assert crack.geometry.original_size == (50, 70)


def test_collate_and_dataloader(mvtec_root: Path) -> None:
    splits = load_mvtec(mvtec_root, val_fraction=0.0)
    ds = ImageDataset(splits.test, Resize((48, 64)))
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate)
    batches = list(loader)
    assert [len(b) for b in batches] == [4, 2]
    b = batches[0]
    assert isinstance(b, Batch)
    assert b.images.shape == (4, 3, 48, 64) and b.images.dtype == torch.float32
    assert b.labels.dtype == torch.long and b.labels.shape == (4,)
    assert len(b.masks) == len(b.paths) == len(b.defect_types) == len(b.geometries) == 4
    assert b.paths == [str(r.path) for r in splits.test[:4]]
    assert b.labels.tolist() == [r.label for r in splits.test[:4]]
    assert all(m is not None and m.shape == (48, 64) for m in b.masks)


def test_collate_empty() -> None:
    with pytest.raises(ValueError):
        collate([])


def test_dataset_mask_shape_mismatch(tmp_path: Path, save_image, rgb) -> None:
    img = save_image(tmp_path / "a.png", rgb(40, 50))
    mask = save_image(tmp_path / "a_mask.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="must match") as info:
        ImageDataset([Record(img, 1, "x", mask)], Resize(32))[0]
    assert str(mask) in str(info.value)


def test_dataset_unreadable_names_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(DataError) as info:
        ImageDataset([Record(bad, 0, "good")], Resize(32))[0]
    assert str(bad) in str(info.value)


# --- real data (read-only, ../shared/data; skipped when absent) -----------------------------------

MTD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mtd" / "magnetic_tile"


@pytest.mark.realdata
def test_mvtec_loader_on_magnetic_tile() -> None:
    if not MTD.is_dir():
        pytest.skip(f"real data not found at {MTD}")
    splits = load_mvtec(MTD, val_fraction=0.1)
    assert len(splits.train) + len(splits.val) == 762
    assert len(splits.val) == 76
    assert len(splits.test) == 582
    assert sum(r.label == 1 for r in splits.test) == 392
    assert splits.has_masks
    assert all(r.mask_path is not None and r.mask_path.is_file() for r in splits.test if r.label == 1)
