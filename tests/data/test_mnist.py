"""The MNIST IDX reader: format, md5 check and errors on generated files; the real files when present."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from defectlens.data.mnist import MNIST_MD5, load_mnist, read_idx
from defectlens.errors import ConfigError, DataError

MNIST_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(root, prefix: str, images: np.ndarray, labels: np.ndarray, zipped: bool = True) -> None:
    for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        content = idx_bytes(array)
        if zipped:
            (root / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (root / stem).write_bytes(content)


@pytest.mark.parametrize("zipped", [True, False])
def test_read_idx_round_trip_and_md5(tmp_path, zipped):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    content = idx_bytes(images)
    path = tmp_path / ("x.gz" if zipped else "x")
    path.write_bytes(gzip.compress(content) if zipped else content)
    np.testing.assert_array_equal(read_idx(path, hashlib.md5(content).hexdigest()), images)
    with pytest.raises(DataError, match=f"{path}: md5 of the decompressed content is .*expected 0+"):
        read_idx(path, "0" * 32)


def test_bad_files_name_the_path_and_the_fault(tmp_path):
    with pytest.raises(DataError, match="IDX file not found"):
        read_idx(tmp_path / "none")
    (tmp_path / "magic").write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError, match="magic is not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "float").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x00" * 4)
    with pytest.raises(DataError, match="data type 0x0d is not supported"):
        read_idx(tmp_path / "float")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(DataError, match=r"declares shape \(2, 3\) \(6 bytes\) but 5 bytes follow"):
        read_idx(tmp_path / "short")
    (tmp_path / "broken.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "broken.gz")


def test_load_mnist_from_generated_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5], np.uint8)
    write_split(tmp_path, "t10k", images, labels, zipped=False)
    got_images, got_labels = load_mnist(tmp_path, "test", verify=False)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == list(range(6))
    with pytest.raises(DataError, match="md5"):  # generated files are not the real MNIST
        load_mnist(tmp_path, "test")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ConfigError, match="split must be one of"):
        load_mnist(tmp_path, "val")
    write_split(tmp_path, "train", images, labels[:5])
    with pytest.raises(DataError, match="do not match"):
        load_mnist(tmp_path, "train", verify=False)


@pytest.mark.realdata
def test_real_mnist_files():
    root = MNIST_ROOT
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found at {root} (see shared/data/README.md)")
    assert len(MNIST_MD5) == 4
    images, labels = load_mnist(root, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
