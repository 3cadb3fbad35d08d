"""Dataset layouts and train/val/test splits (no torch: the service and the inferencer use them too).

A dataset is a list of :class:`Record` (path, label, defect type, optional mask path) per split,
gathered in :class:`DataSplits`. Loaders check the layout, and by default every file's header, when
they are called, so a bad dataset fails before any training starts, with a message naming the path.

Labels: 0 normal (``defect_type == "good"``), 1 anomalous (defect type = folder name), -1 unknown
(plain prediction input, ``defect_type == ""``).

Splits are deterministic: record lists are sorted by path, and any random carving uses
``numpy.random.default_rng(seed).permutation`` over the sorted list (see :func:`carve`).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectlens.data.io import (
    IMAGE_SUFFIXES,
    check_readable,
    is_image_file,
    list_images,
    read_size,
)
from defectlens.errors import ConfigError, DataError

__all__ = [
    "DataSplits",
    "Record",
    "carve",
    "load_folder",
    "load_mvtec",
    "records_from_paths",
]

logger = logging.getLogger(__name__)

NORMAL, ANOMALOUS, UNKNOWN = 0, 1, -1
GOOD = "good"
MASK_SUFFIX = "_mask"

MVTEC_LAYOUT = (
    "expected the MVTec AD layout: <root>/train/good/*.png, <root>/test/<type>/*.png "
    "(type 'good' = normal) and optionally <root>/ground_truth/<type>/<stem>_mask.png"
)


# --------------------------------------------------------------------------------------------------
# Records and splits


@dataclass(frozen=True)
class Record:
    """One image of a dataset."""

    path: Path
    label: int  # 0 normal, 1 anomalous, -1 unknown
    defect_type: str  # "good" for normal, folder name for anomalous, "" for unknown
    mask_path: Path | None = None


def _type_counts(records: Sequence[Record]) -> str:
    if not records:
        return "0 images"
    counts = Counter(r.defect_type or "unlabelled" for r in records)
    # "good" first, then the defect types alphabetically
    order = sorted(counts, key=lambda t: (t != GOOD, t))
    parts = ", ".join(f"{t} {counts[t]}" for t in order)
    return f"{len(records)} images ({parts})"


@dataclass
class DataSplits:
    """Train / validation / test records of one dataset.

    ``has_masks`` is True when the test set holds anomalous images and every one of them has a
    ground-truth mask (so pixel-level metrics can be computed). ``val_carved`` is True when the val part
    was carved at random from the good training images (detectors that calibrate out of fold then train
    on it too), False when it came from a ``val/`` folder of its own.
    """

    train: list[Record]
    val: list[Record]
    test: list[Record]
    root: Path | None = None
    has_masks: bool = False
    val_carved: bool = True

    def summary(self) -> str:
        """One line per split with counts per defect type, then whether pixel masks are present."""
        lines = [
            f"train: {_type_counts(self.train)}",
            f"val:   {_type_counts(self.val)}",
            f"test:  {_type_counts(self.test)}",
        ]
        n_anomalous = sum(r.label == ANOMALOUS for r in self.test)
        n_normal = sum(r.label == NORMAL for r in self.test)
        if n_anomalous == 0:
            lines.append("masks: none (the test set has no anomalous images; metrics need anomalies)")
        elif self.has_masks:
            lines.append(f"masks: yes, for all {n_anomalous} anomalous test images (pixel metrics available)")
        else:
            n_masked = sum(r.label == ANOMALOUS and r.mask_path is not None for r in self.test)
            if n_masked == 0:
                lines.append("masks: none (image-level labels only; no pixel metrics)")
            else:
                lines.append(
                    f"masks: partial ({n_masked} of {n_anomalous} anomalous test images have one; "
                    "image-level metrics only)"
                )
        if n_anomalous and not n_normal:
            lines.append("note: the test set has no normal images; AUROC needs both normal and anomalous")
        return "\n".join(lines)


def _has_masks(test: Sequence[Record]) -> bool:
    anomalous = [r for r in test if r.label == ANOMALOUS]
    return bool(anomalous) and all(r.mask_path is not None for r in anomalous)


# --------------------------------------------------------------------------------------------------
# Helpers


def _check_fraction(value: object, name: str) -> float:
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
        or not 0.0 <= float(value) < 1.0
    ):
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_seed(seed: object) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def _n_carved(n: int, fraction: float) -> int:
    """How many of ``n`` items a fraction takes: rounded half up, at least 1 when the fraction is
    positive and ``n >= 2``, and always leaving at least one item behind."""
    if fraction <= 0.0 or n < 2:
        return 0
    return min(n - 1, max(1, math.floor(n * fraction + 0.5)))


def carve(items: Sequence[Path], fraction: float, rng: np.random.Generator) -> tuple[list[Path], list[Path]]:
    """Split sorted ``items`` into ``(kept, carved)``, both sorted; ``carved`` holds
    ``_n_carved(len(items), fraction)`` items chosen by ``rng.permutation``."""
    items = sorted(items)
    n_out = _n_carved(len(items), fraction)
    if n_out == 0:
        return items, []
    perm = rng.permutation(len(items))
    out = set(perm[:n_out].tolist())
    kept = [p for i, p in enumerate(items) if i not in out]
    carved = [p for i, p in enumerate(items) if i in out]
    return kept, carved


def _is_mask_name(path: Path) -> bool:
    return path.stem.endswith(MASK_SUFFIX)


def _image_files(folder: Path, what: str) -> list[Path]:
    """Images in a dataset folder, leaving out ``*_mask.*`` files (masks stored next to images)."""
    if not folder.exists():
        raise DataError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} is not a directory")
    files = list_images(folder)
    masks = [p for p in files if _is_mask_name(p)]
    if masks:
        logger.info("ignoring %d *%s files in image folder %s", len(masks), MASK_SUFFIX, folder)
    return [p for p in files if not _is_mask_name(p)]


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _mask_index(folder: Path) -> dict[str, list[Path]]:
    """Map stem -> image files in ``folder`` with that stem (any image suffix)."""
    index: dict[str, list[Path]] = {}
    for p in list_images(folder):
        index.setdefault(p.stem, []).append(p)
    return index


def _suffix_rank(path: Path) -> tuple[int, str]:
    suffix = path.suffix.lower()
    return (IMAGE_SUFFIXES.index(suffix) if suffix in IMAGE_SUFFIXES else len(IMAGE_SUFFIXES), path.name)


def _find_mask(image: Path, index: dict[str, list[Path]]) -> Path | None:
    """``<stem>_mask.*`` first, then ``<stem>.*``; with several suffixes ``.png`` wins (logged)."""
    for key in (image.stem + MASK_SUFFIX, image.stem):
        candidates = index.get(key)
        if candidates:
            chosen = min(candidates, key=_suffix_rank)
            if len(candidates) > 1:
                logger.warning(
                    "several masks match image %s: %s; using %s",
                    image,
                    ", ".join(str(c) for c in candidates),
                    chosen,
                )
            return chosen
    return None


def _check_records(records: Sequence[Record]) -> None:
    """Read every header; a mask must have the same size as its image."""
    for r in records:
        size = read_size(r.path)
        if r.mask_path is not None:
            mask_size = read_size(r.mask_path)
            if mask_size != size:
                raise DataError(
                    f"mask {r.mask_path} is {mask_size[1]}x{mask_size[0]} (WxH) but its image {r.path} is "
                    f"{size[1]}x{size[0]}; a mask must match its image pixel for pixel"
                )


def _missing_masks_error(missing: list[tuple[Path, Path]], where: str) -> DataError:
    image, expected = missing[0]
    more = f" (and {len(missing) - 1} more anomalous images without a mask)" if len(missing) > 1 else ""
    return DataError(
        f"anomalous image {image} has no mask: expected {expected} (any image suffix) in {where}{more}"
    )


# --------------------------------------------------------------------------------------------------
# MVTec AD layout


def load_mvtec(
    root: str | Path, val_fraction: float = 0.1, seed: int = 0, check_files: bool = True
) -> DataSplits:
    """Load a dataset in the MVTec AD layout.

    - ``<root>/train/good/*`` -> train (label 0); ``val_fraction`` of it is carved out at random
      (``numpy.random.default_rng(seed)``) as the validation split, unless ``<root>/val/`` exists, in
      which case ``<root>/val/good`` (and any defect-type folders there, label 1, no masks) is used.
    - ``<root>/test/<type>/*`` -> test; type ``good`` is normal (label 0), any other anomalous (label 1).
    - ``<root>/ground_truth/<type>/<stem>_mask.*`` -> masks (``<stem>.*`` is accepted too). Without a
      ``ground_truth`` folder the dataset has image-level labels only (``has_masks`` False). With one,
      every anomalous test image needs its mask.

    Files named ``*_mask.*`` inside image folders are not taken as images. With ``check_files`` every
    image and mask header is read now (and mask sizes compared with their images).

    Raises:
        ConfigError: ``val_fraction`` outside [0, 1) or a bad ``seed``.
        DataError: missing root, ``train/good`` or ``test`` folder, no training images, an anomalous
            image without its mask, an unreadable file; the message names the path.
    """
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    seed = _check_seed(seed)
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset root {root} does not exist; {MVTEC_LAYOUT}")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a directory; {MVTEC_LAYOUT}")
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise DataError(f"training folder {train_dir} does not exist; {MVTEC_LAYOUT}")
    train_files = _image_files(train_dir, "training")
    if not train_files:
        raise DataError(
            f"training folder {train_dir} holds no images (suffixes {', '.join(IMAGE_SUFFIXES)}); "
            f"{MVTEC_LAYOUT}"
        )
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DataError(f"test folder {test_dir} does not exist; {MVTEC_LAYOUT}")

    gt_dir = root / "ground_truth"
    use_masks = gt_dir.is_dir()
    if not use_masks:
        logger.info("no %s folder: image-level labels only, no pixel masks", gt_dir)

    # test
    test: list[Record] = []
    missing: list[tuple[Path, Path]] = []
    stray = [p for p in test_dir.iterdir() if is_image_file(p)]
    if stray:
        logger.warning("ignoring %d images directly inside %s (expected test/<type>/)", len(stray), test_dir)
    for type_dir in _subfolders(test_dir):
        defect_type = type_dir.name
        files = _image_files(type_dir, "test")
        if not files:
            logger.warning("test folder %s holds no images", type_dir)
            continue
        if defect_type == GOOD:
            test.extend(Record(p, NORMAL, GOOD) for p in files)
            continue
        index = _mask_index(gt_dir / defect_type) if use_masks and (gt_dir / defect_type).is_dir() else {}
        for p in files:
            mask = _find_mask(p, index) if use_masks else None
            if use_masks and mask is None:
                missing.append((p, gt_dir / defect_type / f"{p.stem}{MASK_SUFFIX}.png"))
            test.append(Record(p, ANOMALOUS, defect_type, mask))
    if not test:
        raise DataError(f"test folder {test_dir} holds no images in any <type> folder; {MVTEC_LAYOUT}")
    if missing:
        raise _missing_masks_error(missing, str(gt_dir))

    # train / val
    val_dir = root / "val"
    val: list[Record]
    if val_dir.is_dir():
        val_good = val_dir / GOOD
        if not val_good.is_dir():
            raise DataError(
                f"validation folder {val_dir} exists but {val_good} does not; put normal validation "
                f"images in {val_good} or remove {val_dir} to carve val_fraction of train/good instead"
            )
        val = []
        for type_dir in _subfolders(val_dir):
            label = NORMAL if type_dir.name == GOOD else ANOMALOUS
            val.extend(Record(p, label, type_dir.name) for p in _image_files(type_dir, "validation"))
        if not any(r.label == NORMAL for r in val):
            raise DataError(f"validation folder {val_good} holds no images")
        logger.info("using the validation split in %s (val_fraction ignored)", val_dir)
        train = [Record(p, NORMAL, GOOD) for p in train_files]
    else:
        kept, carved = carve(train_files, val_fraction, np.random.default_rng(seed))
        train = [Record(p, NORMAL, GOOD) for p in kept]
        val = [Record(p, NORMAL, GOOD) for p in carved]

    train.sort(key=lambda r: r.path)
    val.sort(key=lambda r: r.path)
    test.sort(key=lambda r: r.path)
    if check_files:
        for records in (train, val, test):
            _check_records(records)
    splits = DataSplits(
        train, val, test, root=root, has_masks=use_masks and _has_masks(test), val_carved=not val_dir.is_dir()
    )
    logger.info("loaded MVTec-layout dataset %s\n%s", root, splits.summary())
    return splits


# --------------------------------------------------------------------------------------------------
# Plain folders


def _as_folder_list(value: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]


def load_folder(
    good: str | Path,
    abnormal: str | Path | Sequence[str | Path] = (),
    masks: str | Path | None = None,
    good_test: str | Path | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    check_files: bool = True,
) -> DataSplits:
    """Build splits from plain folders.

    Args:
        good: folder of normal images.
        abnormal: zero or more folders of anomalous images (test only); defect type = folder name.
            A single path is accepted as one folder.
        masks: optional folder of masks, matched to anomalous images by stem (``<stem>_mask.*`` first,
            then ``<stem>.*``). When given, every anomalous image needs one.
        good_test: optional folder of normal test images. Without it ``test_fraction`` of ``good``
            goes to the test set.
        test_fraction, val_fraction: fractions of ``good`` moved to test and to val. One permutation
            ``numpy.random.default_rng(seed).permutation`` of the sorted good images is drawn; its
            first ``round(n * test_fraction)`` entries go to test (none when ``good_test`` is given),
            the next ``round(n_left * val_fraction)`` to val, the rest to train.
        check_files: read every image and mask header now.

    With no abnormal folders the test set holds only normal images; that is allowed, but image
    metrics need anomalies (the summary says so).

    Raises:
        ConfigError: a fraction outside [0, 1) or a bad ``seed``.
        DataError: a folder missing or empty, an anomalous image without a mask, an unreadable file.
    """
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    seed = _check_seed(seed)
    good = Path(good)
    good_files = _image_files(good, "good")
    if not good_files:
        raise DataError(f"good folder {good} holds no images (suffixes {', '.join(IMAGE_SUFFIXES)})")

    # one permutation: [test | val | train]
    n = len(good_files)
    n_test = 0 if good_test is not None else _n_carved(n, test_fraction)
    n_val = _n_carved(n - n_test, val_fraction)
    perm = np.random.default_rng(seed).permutation(n) if (n_test or n_val) else np.arange(n)
    test_idx = perm[:n_test]
    val_idx = perm[n_test : n_test + n_val]
    train_idx = perm[n_test + n_val :]
    train = sorted((Record(good_files[i], NORMAL, GOOD) for i in train_idx), key=lambda r: r.path)
    val = sorted((Record(good_files[i], NORMAL, GOOD) for i in val_idx), key=lambda r: r.path)
    test = [Record(good_files[i], NORMAL, GOOD) for i in test_idx]

    if good_test is not None:
        good_test = Path(good_test)
        test_files = _image_files(good_test, "good_test")
        if not test_files:
            raise DataError(f"good_test folder {good_test} holds no images")
        test.extend(Record(p, NORMAL, GOOD) for p in test_files)

    mask_index: dict[str, list[Path]] | None = None
    if masks is not None:
        masks = Path(masks)
        if not masks.is_dir():
            raise DataError(f"masks folder {masks} does not exist or is not a directory")
        mask_index = _mask_index(masks)

    missing: list[tuple[Path, Path]] = []
    for folder in _as_folder_list(abnormal):
        files = _image_files(folder, "abnormal")
        if not files:
            raise DataError(f"abnormal folder {folder} holds no images")
        for p in files:
            mask = None
            if mask_index is not None:
                mask = _find_mask(p, mask_index)
                if mask is None:
                    missing.append((p, Path(masks) / f"{p.stem}{MASK_SUFFIX}.png"))  # type: ignore[arg-type]
            test.append(Record(p, ANOMALOUS, folder.name, mask))
    if missing:
        raise _missing_masks_error(missing, f"{masks} (<stem>.* or <stem>{MASK_SUFFIX}.*)")

    test.sort(key=lambda r: r.path)
    if check_files:
        for records in (train, val, test):
            _check_records(records)
    splits = DataSplits(train, val, test, root=None, has_masks=_has_masks(test))
    logger.info("loaded folder dataset (good=%s)\n%s", good, splits.summary())
    return splits


# --------------------------------------------------------------------------------------------------
# Prediction inputs


def records_from_paths(inputs: Sequence[str | Path], check_files: bool = True) -> list[Record]:
    """Unlabelled records (label -1, defect type ``""``) for image files and/or folders.

    Folders are listed with :func:`~defectlens.data.io.list_images` (non-recursive, ``*_mask.*``
    files left out); files are taken as given, whatever their suffix. Order: inputs in the order
    given, each folder sorted; duplicates are dropped. With ``check_files`` every header is read now.

    Raises:
        DataError: an input path does not exist, a folder holds no images, or nothing was given.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    paths: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = _image_files(p, "input")
            if not found:
                raise DataError(f"input folder {p} holds no images (suffixes {', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            raise DataError(f"input path {p} does not exist")
    if not paths:
        raise DataError(f"no input images found in {[str(x) for x in inputs]!r}")
    seen: set[Path] = set()
    records: list[Record] = []
    for p in paths:
        key = p.resolve()
        if key in seen:
            continue
        seen.add(key)
        if check_files:
            check_readable(p)
        records.append(Record(p, UNKNOWN, ""))
    return records
