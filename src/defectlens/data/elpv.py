"""The embedded demo data: ELPV solar-cell electroluminescence images as a one-class split.

The PyPI package ``elpv-dataset`` ships 2,624 labelled 300x300 greyscale cell images as files
(``elpv_dataset/data/images/cell0001.png`` .. ``cell2624.png`` and ``elpv_dataset/data/labels.csv``).
The records built here point at those installed files; nothing is copied.

Split rule (ELPV one-class anomaly split v1), per cell type ``T`` in ``mono``/``poly`` separately,
with row ``i`` of ``labels.csv`` being ``images/cell{i+1:04d}.png``::

    good = np.flatnonzero((types == T) & (proba == 0.0))
    bad = np.flatnonzero((types == T) & (proba == 1.0))
    n_test = len(good) // 5
    perm = np.random.default_rng(0).permutation(len(good))
    test_good, train = np.sort(good[perm[:n_test]]), np.sort(good[perm[n_test:]])

- train: ``train`` (all good); the validation split is carved out of it with
  ``numpy.random.default_rng(seed + 1)`` (a fresh generator per cell type, over the train files
  sorted by path; see :func:`defectlens.data.datasets.carve`), so ``train + val`` is the rule's train.
- test: ``test_good`` (label 0, ``"good"``) + every p=1 cell (label 1, ``"defective"``); no masks.
- p=1/3 and p=2/3 cells are in neither; :func:`elpv_uncertain` returns them for separate reporting.
- ``"both"`` is the union of the mono and poly splits, not a new draw.

The test_good index lists are checked against sha256 sums (a change in NumPy's random stream or in
the package would raise :class:`~defectlens.errors.DataError` instead of silently moving the split).
Sizes (mono / poly / both): train 471 / 736 / 1207, test good 117 / 184 / 301,
test defective 313 / 402 / 715, uncertain p=1/3 117 / 178 / 295, p=2/3 56 / 50 / 106.

Dataset and licence
-------------------
The ELPV images and labels are licensed CC BY-NC-SA 4.0 (non-commercial, share-alike; "for commercial
use, please contact" the authors); the package's loader code is Apache-2.0. Install the data with
``pip install elpv-dataset``; do not vendor it into a repository under another licence. Please cite:

- Buerhop-Lutz, C.; Deitsch, S.; Maier, A.; Gallwitz, F.; Berger, S.; Doll, B.; Hauch, J.; Camus, C.;
  Brabec, C. J. A Benchmark for Visual Identification of Defective Solar Cells in Electroluminescence
  Imagery. EU PVSEC 2018. DOI: 10.4229/35thEUPVSEC20182018-5CV.3.15
- Deitsch, S.; Christlein, V.; Berger, S.; Buerhop-Lutz, C.; Maier, A.; Gallwitz, F.; Riess, C.
  Automatic classification of defective photovoltaic module cells in electroluminescence images.
  Solar Energy 185 (2019) 455-468. DOI: 10.1016/j.solener.2019.02.067
- Deitsch, S.; Buerhop-Lutz, C.; Sovetkin, E.; Steland, A.; Maier, A.; Gallwitz, F.; Riess, C.
  Segmentation of photovoltaic module cells in uncalibrated electroluminescence images.
  Machine Vision and Applications 32(4), 2021. DOI: 10.1007/s00138-021-01191-9
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectlens.data.datasets import (
    ANOMALOUS,
    GOOD,
    NORMAL,
    DataSplits,
    Record,
    _check_fraction,
    _check_seed,
    carve,
)
from defectlens.errors import ConfigError, DataError

__all__ = ["ELPV_CELL_TYPES", "elpv_data_dir", "elpv_uncertain", "load_elpv"]

logger = logging.getLogger(__name__)

ELPV_CELL_TYPES: tuple[str, ...] = ("mono", "poly", "both")
_TYPES = ("mono", "poly")
DEFECTIVE = "defective"
UNCERTAIN = {"p=1/3": 1.0 / 3.0, "p=2/3": 2.0 / 3.0}
_PROBAS = frozenset({0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0})
_SPLIT_SEED = 0  # fixed by the split rule; the `seed` argument only drives the val carving
_INSTALL_HINT = "install the ELPV demo data with `pip install elpv-dataset`"

# sha256 of ",".join(map(str, test_good)) with global 0-based row indices, ascending.
_TEST_GOOD_SHA256 = {
    "mono": "7085d0e7971bb01623d34f30b58b7d097f580014cf6e21b5c796d35d5cc2170c",
    "poly": "c715ff0fad8e9c1042e5a8529b42c46fdaed9c59096b8227f12162076ede484e",
}


@dataclass(frozen=True)
class _Table:
    data_dir: Path
    paths: tuple[Path, ...]
    proba: np.ndarray  # (N,) float64
    types: np.ndarray  # (N,) str


def elpv_data_dir() -> Path:
    """The installed ``elpv_dataset/data`` folder (holds ``labels.csv`` and ``images/``).

    Raises:
        DataError: the package is not installed, or its data files are missing.
    """
    try:
        spec = importlib.util.find_spec("elpv_dataset")
    except (ImportError, ValueError) as exc:
        raise DataError(f"cannot locate package elpv_dataset: {exc}; {_INSTALL_HINT}") from exc
    if spec is None:
        raise DataError(f"package elpv_dataset is not installed; {_INSTALL_HINT}")
    try:
        data = Path(str(importlib.resources.files("elpv_dataset") / "data"))
    except Exception as exc:
        raise DataError(f"cannot locate the data of package elpv_dataset: {exc}; {_INSTALL_HINT}") from exc
    if not (data / "labels.csv").is_file() or not (data / "images").is_dir():
        raise DataError(
            f"ELPV data folder {data} lacks labels.csv or images/; reinstall it with "
            "`pip install --force-reinstall elpv-dataset`"
        )
    return data


@functools.lru_cache(maxsize=1)
def _table() -> _Table:
    data = elpv_data_dir()
    labels = data / "labels.csv"
    paths: list[Path] = []
    proba: list[float] = []
    types: list[str] = []
    with labels.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.split()
            row = len(paths)
            expected = f"images/cell{row + 1:04d}.png"
            try:
                p = float(fields[1]) if len(fields) == 3 else None
            except ValueError:
                p = None
            if len(fields) != 3 or fields[0] != expected or p not in _PROBAS or fields[2] not in _TYPES:
                raise DataError(
                    f"unexpected line {lineno} in {labels}: {line.strip()!r}; expected "
                    f"'{expected} <0|1/3|2/3|1> <mono|poly>'"
                )
            paths.append(data / fields[0])
            proba.append(p)  # type: ignore[arg-type]
            types.append(fields[2])
    return _Table(data, tuple(paths), np.asarray(proba, dtype=np.float64), np.asarray(types))


@functools.lru_cache(maxsize=2)
def _split(cell_type: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, test_good, bad)`` global row indices for one cell type, per the split rule."""
    table = _table()
    of_type = table.types == cell_type
    good = np.flatnonzero(of_type & (table.proba == 0.0))
    bad = np.flatnonzero(of_type & (table.proba == 1.0))
    n_test = len(good) // 5
    perm = np.random.default_rng(_SPLIT_SEED).permutation(len(good))
    test_good = np.sort(good[perm[:n_test]])
    train = np.sort(good[perm[n_test:]])
    digest = hashlib.sha256(",".join(map(str, test_good.tolist())).encode()).hexdigest()
    if digest != _TEST_GOOD_SHA256[cell_type]:
        raise DataError(
            f"the ELPV {cell_type} test split drawn from {table.data_dir / 'labels.csv'} does not match "
            f"the reference split v1 (sha256 {digest}, expected {_TEST_GOOD_SHA256[cell_type]}); the "
            "package data or NumPy's random stream has changed"
        )
    return train, test_good, bad


def _types(cell_type: object) -> tuple[str, ...]:
    if cell_type not in ELPV_CELL_TYPES:
        raise ConfigError(f"ELPV cell_type must be one of {list(ELPV_CELL_TYPES)}, got {cell_type!r}")
    return _TYPES if cell_type == "both" else (str(cell_type),)


def _records(paths: list[Path], label: int, defect_type: str) -> list[Record]:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"ELPV image {missing[0]} is missing ({len(missing)} missing in all); reinstall it with "
            "`pip install --force-reinstall elpv-dataset`"
        )
    return [Record(p, label, defect_type) for p in paths]


def load_elpv(cell_type: str = "mono", seed: int = 0, val_fraction: float = 0.1) -> DataSplits:
    """The ELPV one-class split (see the module docstring) as :class:`DataSplits`.

    Args:
        cell_type: ``"mono"``, ``"poly"`` or ``"both"`` (union of the two).
        seed: seeds the val carving only (``default_rng(seed + 1)`` per cell type); the test split
            is fixed.
        val_fraction: fraction of each type's train cells moved to val, in [0, 1).

    Raises:
        ConfigError: bad ``cell_type``, ``seed`` or ``val_fraction``.
        DataError: the package is missing, its files are missing, or the split check fails.
    """
    types = _types(cell_type)
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    seed = _check_seed(seed)
    table = _table()
    train: list[Record] = []
    val: list[Record] = []
    test: list[Record] = []
    for t in types:
        train_idx, test_good_idx, bad_idx = _split(t)
        train_paths = [table.paths[i] for i in train_idx]
        kept, carved = carve(train_paths, val_fraction, np.random.default_rng(seed + 1))
        train += _records(kept, NORMAL, GOOD)
        val += _records(carved, NORMAL, GOOD)
        test += _records([table.paths[i] for i in test_good_idx], NORMAL, GOOD)
        test += _records([table.paths[i] for i in bad_idx], ANOMALOUS, DEFECTIVE)
    for records in (train, val, test):
        records.sort(key=lambda r: r.path)
    splits = DataSplits(train, val, test, root=table.data_dir, has_masks=False)
    logger.info("loaded ELPV %s cells from %s\n%s", cell_type, table.data_dir, splits.summary())
    return splits


def elpv_uncertain(cell_type: str = "mono") -> dict[str, list[Record]]:
    """The cells left out of the headline split, for separate reporting.

    Returns ``{"p=1/3": [...], "p=2/3": [...]}``: records with label 1 and ``defect_type`` equal to
    the key, sorted by path. Score them with the same detector and compare against the test's good
    cells (e.g. AUROC of test good vs p=1/3); never mix them into the headline numbers.
    """
    types = _types(cell_type)
    table = _table()
    of_type = np.isin(table.types, types)
    out: dict[str, list[Record]] = {}
    for key, p in UNCERTAIN.items():
        idx = np.flatnonzero(of_type & (table.proba == p))
        out[key] = _records([table.paths[i] for i in idx], ANOMALOUS, key)
    return out
