"""Data layer: reading images, fitting them to the model input, dataset layouts and splits.

Layouts, splits, image I/O and resizing need no torch; the torch datasets load on first use.
"""

from defectlens._lazy import lazy_exports

_EXPORTS = {
    **{name: "defectlens.data.datasets" for name in ("DataSplits", "Record", "load_folder", "load_mvtec")},
    "records_from_paths": "defectlens.data.datasets",
    **{name: "defectlens.data.elpv" for name in ("elpv_uncertain", "load_elpv")},
    **{
        name: "defectlens.data.io"
        for name in ("IMAGE_SUFFIXES", "as_rgb", "check_readable", "list_images", "read_image", "read_mask")
    },
    "read_size": "defectlens.data.io",
    **{name: "defectlens.data.transforms" for name in ("Geometry", "Resize")},
    **{name: "defectlens.data.inputs" for name in ("Batch", "ImageDataset", "Sample", "collate")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
