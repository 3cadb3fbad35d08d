"""The torch side of the data layer: model-ready samples, batches, and datasets of any user input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from defectlens.data.datasets import ANOMALOUS, NORMAL, Record, records_from_paths
from defectlens.data.io import as_rgb, read_image, read_mask
from defectlens.data.transforms import Geometry, Resize
from defectlens.errors import DataError


@dataclass
class Sample:
    """One model-ready image.

    ``mask`` is ``(S_h, S_w) bool``: all False for a normal image; the resized ground truth for an
    anomalous image with a mask; None for an anomalous image without a mask and for unknown labels.
    """

    image: torch.Tensor  # (3, S_h, S_w) float32 in [0, 1]
    label: int
    mask: torch.Tensor | None
    path: str
    defect_type: str
    geometry: Geometry
    original: np.ndarray  # (H, W, 3) uint8 as decoded, so reports draw on it without decoding again
    inspect: torch.Tensor | None = None  # (S_h, S_w) bool region of interest; None: all of it
    digest: bytes | None = None  # identifies the image a tile was cut from (`data/tiling.py`)


@dataclass
class Batch:
    """A collated list of :class:`Sample`."""

    images: torch.Tensor  # (B, 3, S_h, S_w) float32
    labels: torch.Tensor  # (B,) long
    masks: list[torch.Tensor | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    defect_types: list[str] = field(default_factory=list)
    geometries: list[Geometry] = field(default_factory=list)
    originals: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 as decoded
    inspect: list[torch.Tensor | None] = field(default_factory=list)
    digests: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def pin_memory(self) -> Batch:
        """Used by ``DataLoader(pin_memory=True)``."""
        return Batch(
            self.images.pin_memory(),
            self.labels.pin_memory(),
            [m.pin_memory() if m is not None else None for m in self.masks],
            self.paths,
            self.defect_types,
            self.geometries,
            self.originals,
            self.inspect,
            self.digests,
        )


class ImageDataset(Dataset):
    """Reads, resizes and labels the images of a record list (a ``torch.utils.data.Dataset``)."""

    def __init__(self, records: Sequence[Record], resize: Resize) -> None:
        self.records = list(records)
        self.resize = resize

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        record = self.records[i]
        rgb = read_image(record.path)
        image, geometry = self.resize.image(rgb)
        mask: torch.Tensor | None
        if record.label == NORMAL:
            mask = torch.zeros(self.resize.size, dtype=torch.bool)
        elif record.label == ANOMALOUS and record.mask_path is not None:
            raw = read_mask(record.mask_path)
            if raw.shape != rgb.shape[:2]:
                raise DataError(
                    f"mask {record.mask_path} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
                    f"{record.path} is {rgb.shape[1]}x{rgb.shape[0]}; a mask must match its image"
                )
            mask = torch.from_numpy(self.resize.mask(raw))
        else:
            mask = None
        return Sample(
            image=torch.from_numpy(image),
            label=int(record.label),
            mask=mask,
            path=str(record.path),
            defect_type=record.defect_type,
            geometry=geometry,
            original=rgb,
        )


def collate(samples: list[Sample]) -> Batch:
    """``DataLoader`` ``collate_fn``: stack images and labels, keep masks, paths and geometries as lists."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    return Batch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        masks=[s.mask for s in samples],
        paths=[s.path for s in samples],
        defect_types=[s.defect_type for s in samples],
        geometries=[s.geometry for s in samples],
        originals=[s.original for s in samples],
        inspect=[s.inspect for s in samples],
        digests=[s.digest for s in samples],
    )


class ArrayDataset(Dataset):
    """In-memory images: uint8 (H, W), (H, W, 3) or (H, W, 4) arrays, or float arrays in [0, 1]."""

    def __init__(self, images: Sequence[np.ndarray], resize: Resize) -> None:
        self.images = images
        self.resize = resize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        rgb = as_rgb(self.images[index], f"image {index}")
        image, geometry = self.resize.image(rgb)
        return Sample(
            image=torch.from_numpy(image),
            label=-1,
            mask=None,
            path=f"<array {index}>",
            defect_type="",
            geometry=geometry,
            original=rgb,
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
