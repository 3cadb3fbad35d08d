"""Turn whatever a user hands to `fit`/`predict` into a dataset of resized samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from defectlens.data.datasets import ImageDataset, Record, Sample, collate, records_from_paths
from defectlens.data.transforms import Resize
from defectlens.errors import DataError


class ArrayDataset(Dataset):
    """In-memory images: uint8 (H, W), (H, W, 3) or (H, W, 4) arrays, or float arrays in [0, 1]."""

    def __init__(self, images: Sequence[np.ndarray], resize: Resize) -> None:
        self.images = images
        self.resize = resize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        array = np.asarray(self.images[index])
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
            raise DataError(f"image {index} must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
        if array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        array = array[..., :3]
        if array.dtype != np.uint8:
            if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
                raise DataError(
                    f"image {index}: float arrays must hold values in [0, 1], dtype {array.dtype}"
                )
            array = np.round(array * 255).astype(np.uint8)
        image, geometry = self.resize.image(np.ascontiguousarray(array))
        return Sample(
            image=torch.from_numpy(image),
            label=-1,
            mask=None,
            path=f"<array {index}>",
            defect_type="",
            geometry=geometry,
        )


def as_dataset(data: Any, resize: Resize) -> Dataset:
    """A dataset of `Sample`s from records, paths (files or folders), arrays, or a ready dataset.

    Raises:
        DataError: the input is empty or of a kind that is not understood.
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        data = list(data) if data.ndim == 4 else [data]
    if isinstance(data, str | Path):
        data = [data]
    if not isinstance(data, Sequence) or len(data) == 0:
        raise DataError(f"no images given: expected paths, records or arrays, got {type(data).__name__}")
    if all(isinstance(item, Record) for item in data):
        return ImageDataset(list(data), resize)
    if all(isinstance(item, str | Path) for item in data):
        return ImageDataset(records_from_paths(data), resize)
    if all(isinstance(item, np.ndarray) for item in data):
        return ArrayDataset(data, resize)
    raise DataError("images must all be paths, all Records or all numpy arrays, not a mix")


def loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """A deterministic, in-order loader that collates `Sample`s into a `Batch`."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate
    )
