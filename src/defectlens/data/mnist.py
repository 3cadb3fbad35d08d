"""MNIST from its four IDX files, checked against the published md5 of their decompressed content.

The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each either gzipped (``.gz``, as distributed) or plain. The md5 of the
decompressed bytes is the same for every copy of MNIST (a re-compressed ``.gz`` has another file md5 but
the same content), so that is what is checked; ``shared/data/mnist/PROVENANCE.txt`` lists the same sums.

IDX format: a big-endian header ``0x00 0x00 <type> <ndim>`` (type 0x08 = unsigned byte), then ``ndim``
big-endian uint32 sizes, then the data in row-major order.

Citation: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998. MNIST has no formal licence from its authors.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from defectlens.errors import ConfigError, DataError

__all__ = ["MNIST_MD5", "load_mnist", "read_idx"]

MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {"train": "train", "test": "t10k"}
_IDX_TYPES = {0x08: np.dtype(np.uint8)}


def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error


def read_idx(path: str | Path, md5: str | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into an array of its declared shape.

    Args:
        path: the file.
        md5: expected md5 of the decompressed content; `None` skips the check.

    Returns:
        The data, e.g. (N, 28, 28) uint8 for images or (N,) uint8 for labels.

    Raises:
        DataError: the file is missing, unreadable, has another md5, or is not a valid unsigned-byte IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    content = _read_bytes(path)
    if md5 is not None and (actual := hashlib.md5(content).hexdigest()) != md5:
        raise DataError(
            f"{path}: md5 of the decompressed content is {actual}, expected {md5} (corrupt copy?)"
        )
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise DataError(f"{path} is not an IDX file: its first two bytes must be zero")
    kind, ndim = content[2], content[3]
    if kind not in _IDX_TYPES:
        raise DataError(f"{path}: IDX data type 0x{kind:02x} is not supported (only 0x08, unsigned byte)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions, {len(content)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * _IDX_TYPES[kind].itemsize
    if len(content) - header != expected:
        found = len(content) - header
        raise DataError(f"{path}: header declares shape {shape} ({expected} bytes) but {found} bytes follow")
    return np.frombuffer(content, dtype=_IDX_TYPES[kind], offset=header).reshape(shape).copy()


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST file {stem}(.gz) not found in {root}")


def load_mnist(root: str | Path, split: str = "train", verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images and labels of one split.

    Args:
        root: folder with the four IDX files (gzipped or not).
        split: "train" (60,000 images) or "test" (10,000).
        verify: check the md5 of each decompressed file.

    Returns:
        images (N, 28, 28) uint8 (0 = background) and labels (N,) int64 digits 0-9.

    Raises:
        ConfigError: unknown split.
        DataError: a file is missing or corrupt, or images and labels disagree in number.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    root = Path(root)
    images_stem, labels_stem = f"{SPLITS[split]}-images-idx3-ubyte", f"{SPLITS[split]}-labels-idx1-ubyte"
    images = read_idx(_find(root, images_stem), MNIST_MD5[images_stem] if verify else None)
    labels = read_idx(_find(root, labels_stem), MNIST_MD5[labels_stem] if verify else None)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels.astype(np.int64)
