"""Data layer: reading images, fitting them to the model input, dataset layouts and splits."""

from defectlens.data.datasets import (
    Batch,
    DataSplits,
    ImageDataset,
    Record,
    Sample,
    collate,
    load_folder,
    load_mvtec,
    records_from_paths,
)
from defectlens.data.elpv import elpv_uncertain, load_elpv
from defectlens.data.io import IMAGE_SUFFIXES, check_readable, list_images, read_image, read_mask, read_size
from defectlens.data.transforms import Geometry, Resize

__all__ = [
    "IMAGE_SUFFIXES",
    "Batch",
    "DataSplits",
    "Geometry",
    "ImageDataset",
    "Record",
    "Resize",
    "Sample",
    "check_readable",
    "collate",
    "elpv_uncertain",
    "list_images",
    "load_elpv",
    "load_folder",
    "load_mvtec",
    "read_image",
    "read_mask",
    "read_size",
    "records_from_paths",
]
