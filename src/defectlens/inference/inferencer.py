"""Score images with an exported artefact: no torch, no training code, the same post-processing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.data.datasets import Record, records_from_paths
from defectlens.data.io import as_rgb, read_image
from defectlens.data.transforms import Resize
from defectlens.errors import ConfigError, DataError
from defectlens.inference.artifact import Manifest
from defectlens.inference.backends import open_backend
from defectlens.post.prediction import Calibration, Prediction, ScoredBatch


def iter_images(images: Any) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB uint8 image) for paths, folders, `Record`s, one array or a sequence of arrays.

    Raises:
        DataError: nothing given, a path that does not exist, or an array of the wrong shape.
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    if isinstance(images, str | Path):
        images = [images]
    if not isinstance(images, Sequence | np.ndarray) or len(images) == 0:
        raise DataError(f"no images given: expected paths, records or arrays, got {type(images).__name__}")
    if all(isinstance(item, np.ndarray) for item in images):
        for index, array in enumerate(images):
            yield f"<array {index}>", as_rgb(array, f"image {index}")
        return
    records = [item if isinstance(item, Record) else None for item in images]
    paths = [r.path for r in records] if all(records) else [r.path for r in records_from_paths(images)]
    for path in paths:
        yield str(path), read_image(path)


class Inferencer:
    """An exported detector, run by onnxruntime, OpenVINO or TorchScript.

    Args:
        directory: folder written by `defectlens export` (model file(s) + defectlens.json).
        backend: "auto" (the format's own runtime), "onnxruntime", "openvino" or "torchscript".
        threads: CPU threads for the runtime; `None` uses every core this process may run on.
        verify: check each file's sha256 against the manifest before loading.

    Raises:
        CheckpointError: missing, corrupt or unreadable artefact.
        ConfigError: a backend that cannot run this format or is not installed.
    """

    def __init__(
        self, directory: str | Path, backend: str = "auto", threads: int | None = None, verify: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.load(self.directory, verify=verify)
        self.backend, self._run = open_backend(
            self.directory / self.manifest.model_file, self.manifest.format, backend, threads
        )
        spec = self.manifest.input
        self.input_resize = Resize(tuple(spec["size"]), spec["resize"])
        self.calibration = Calibration.from_dict(self.manifest.calibration)
        self.batch_size = int(self.manifest.params.get("batch_size", 8))

    @property
    def name(self) -> str:
        """The exported detector's registered name."""
        return self.manifest.detector

    @property
    def runtime(self) -> str:
        """What runs the model: the export runtime (a `Detector` says "torch")."""
        return self.backend

    def get_params(self) -> dict[str, Any]:
        """The exported detector's settings, as `Detector.get_params` gives them."""
        return dict(self.manifest.params)

    def __repr__(self) -> str:
        name, backend = self.manifest.detector, self.backend
        return f"Inferencer({str(self.directory)!r}, detector={name!r}, backend={backend!r})"

    def score_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exported graph alone on a resized batch (B, 3, H, W) in [0, 1]: raw scores and maps.

        Raises:
            DataError: the batch does not have the artefact's input shape.
        """
        images = np.asarray(images, dtype=np.float32)
        expected = (3, *self.input_resize.size)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise DataError(
                f"the exported model takes (B, {', '.join(map(str, expected))}) batches, got {images.shape}"
            )
        scores, maps = self._run(np.ascontiguousarray(images))
        return np.asarray(scores, dtype=np.float32), np.asarray(maps, dtype=np.float32)

    def iter_predict(
        self, images: Any, batch_size: int | None = None, progress: bool = False
    ) -> Iterator[ScoredBatch]:
        """Predict batch by batch; yields each batch's names (paths), decoded images and `Prediction`."""
        size = batch_size or self.batch_size
        if size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {size}")
        stream = iter_images(images)
        if progress:
            from tqdm.auto import tqdm

            stream = tqdm(stream, desc="predict", unit="image", leave=False)
        names: list[str] = []
        originals: list[np.ndarray] = []
        for name, rgb in stream:
            names.append(name)
            originals.append(rgb)
            if len(names) == size:
                yield self._scored(names, originals)
                names, originals = [], []
        if names:
            yield self._scored(names, originals)

    def _scored(self, names: list[str], originals: list[np.ndarray]) -> ScoredBatch:
        resized = [self.input_resize.image(rgb) for rgb in originals]
        raw = self.score_batch(np.stack([image for image, _ in resized]))
        return ScoredBatch(names, originals, self.calibration.apply(*raw, [g for _, g in resized]))

    def predict(self, images: Any, batch_size: int | None = None, progress: bool = False) -> Prediction:
        """Score images: paths, a folder, `Record`s or uint8 arrays (H, W, 3); maps at the input size."""
        return Prediction.concatenate([b.prediction for b in self.iter_predict(images, batch_size, progress)])
