"""The one interface every detector shares: fit on good images, predict scores and maps, save/load.

A detector subclass declares its own settings with their defaults and checks (`setting`, see
`core/estimator.py`) and implements two hooks: `_fit_module` (build and fit a torch module
from training batches) and `_build_module` (rebuild the same architecture for a saved state). The fitted
module maps an image batch (B, 3, H, W) in [0, 1] to raw scores (B,) and raw anomaly maps (B, H, W);
everything else — calibration, score normalisation, the three task outputs, checkpoints — lives here
once, so the API, CLI and exports share one path.

Calibration scores the good images with a model that did not see them: detectors that fit from cached
features (`models/cross_fit.py`) score every good training image with the shipped model without it;
detectors that learn weights hold a split out of training, and refit in folds when it is small
(`models/trained.py`).
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from defectlens.core.checkpoint import restore_weights, warn_refit, write_checkpoint
from defectlens.core.context import FitContext, progress_bar, resolve_device
from defectlens.core.estimator import Estimator, setting
from defectlens.core.settings import NON_NEGATIVE, FilePath, Integer, OneOf, Optional, Real
from defectlens.data.datasets import DataSplits, load_folder
from defectlens.data.inputs import Batch, as_dataset, loader
from defectlens.data.roi import AUTO_ROI, region_of_interest
from defectlens.data.tiling import TiledDataset, TileLayout
from defectlens.data.transforms import RESIZE_MODES, Geometry, Resize
from defectlens.errors import ConfigError, DataError
from defectlens.models.tiling import TiledModule, tile_module_of
from defectlens.post.prediction import Calibration, Prediction, ScoredBatch

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "image_detector"
HELD_OUT_FRACTION = 0.1  # share of the good images held out when a detector cannot score out of fold
HELD_OUT_SOURCE = f"held-out split ({HELD_OUT_FRACTION:.0%} of the good images)"


@torch.inference_mode()
def raw_scores(module: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A fitted module on a resized batch (B, 3, H, W) in [0, 1]: raw scores (B,) and maps (B, H, W)."""
    device = next(iter(module.buffers()), torch.empty(0)).device
    scores, maps = module(images.to(device))
    return scores.float().cpu().numpy(), maps.float().cpu().numpy()


def raw_over(
    module: nn.Module, data: DataLoader, progress: bool = False, desc: str = "score"
) -> tuple[np.ndarray, np.ndarray, list[Batch]]:
    """`raw_scores` of every batch of `data`: scores (N,), maps (N, H, W) and the batches themselves."""
    scores, maps, batches = [], [], []
    for batch in progress_bar(data, progress, desc):
        batch_scores, batch_maps = raw_scores(module, batch.images)
        scores.append(batch_scores)
        maps.append(batch_maps)
        batches.append(batch)
    return np.concatenate(scores), np.concatenate(maps), batches


def content_maxima(maps: Any, geometries: list[Geometry], inspect: list[Any] | None = None) -> np.ndarray:
    """Each map's maximum over the image's content (padding added by resize="pad" is not part of it) and
    inside its region of interest (`inspect`, bool masks like the maps, or None); -inf where none is left."""
    inspect = inspect or [None] * len(geometries)
    maxima = []
    for amap, geometry, region in zip(maps, geometries, inspect, strict=True):
        if region is not None:
            amap = np.where(np.asarray(region, dtype=bool), amap, -np.inf)
        content = geometry.crop_content(amap)
        maxima.append(content.max() if content.size else -np.inf)
    return np.array(maxima, dtype=float)


class Detector(Estimator, ABC):
    """Base class of every image anomaly detector.

    Args:
        image_size: side of the square working resolution every image is resized to; the model input
            itself when `tile_size` is None.
        resize: "squash" (plain resize) or "pad" (keep the aspect ratio, pad with black).
        tile_size: None, or the side of square tiles cut from the working resolution (`data/tiling.py`):
            the model is fitted on the tiles of the good images and scores an image tile by tile, and the
            tile maps are blended into one map at working resolution.
        tile_overlap: share of a tile's side that neighbouring tiles overlap by, in [0, 1).
        roi: None (inspect everything), the path of a mask image (white = inspect; resized with the
            image) or "auto" (where the training images show a part, `data/roi.py`). Pixels outside are not
            fitted on, and no score, map, box or metric looks at them. Saved with the model.
        blur_sigma: Gaussian smoothing of the anomaly map in pixels.
        Other settings (batch_size, seed, device, the threshold policy): see `Estimator`.
    """

    # False for detectors whose scoring cannot be written as a fixed graph (e.g. a search at inference).
    exportable: ClassVar[bool] = True
    # How good calibration scores are made without a validation set: "held-out" (a split the model does
    # not train on), "held-out or refits" (`TrainedDetector`) or "out-of-fold" (every good image scored by
    # a model that did not see it, `CrossFitDetector`); `defectlens models` describes each.
    calibration_scores: ClassVar[str] = "held-out"

    image_size: int = setting(256, Integer(32))
    resize: str = setting("squash", OneOf(RESIZE_MODES))
    tile_size: int | None = setting(None, Optional(Integer(32), "no tiles"))
    tile_overlap: float = setting(0.25, Real(0, 1, closed="left"))
    roi: str | None = setting(None, Optional(FilePath(), f"inspect everything; or '{AUTO_ROI}'"))
    blur_sigma: float = setting(4.0, NON_NEGATIVE)

    def _check_params(self) -> None:
        super()._check_params()
        if self.tile_size is not None and self.tile_size > self.image_size:
            raise ConfigError(
                f"tile_size {self.tile_size} is larger than image_size {self.image_size} (the working "
                "resolution it is cut from): raise image_size or lower tile_size"
            )

    # ----------------------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _fit_module(self, train: DataLoader, val: DataLoader, context: FitContext) -> nn.Module:
        """Build and fit the torch module on training batches (`Batch.images` (B, 3, H, W) in [0, 1])."""

    @abstractmethod
    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """Rebuild the fitted module's architecture for `state`, without looking up pretrained weights."""

    @abstractmethod
    def _shaped_module(self, n_train_images: int) -> nn.Module:
        """The fitted module's architecture with placeholder weights and buffers shaped as fitting on
        `n_train_images` images would shape them (for complexity reports without fitting)."""

    def _fit_out_of_fold(
        self, train: DataLoader, context: FitContext
    ) -> tuple[nn.Module, np.ndarray, np.ndarray, str]:
        """For `calibration_scores == "out-of-fold"`: the module fitted on all of `train`, each training
        image's raw score and content map maximum from a model fitted without its fold, and a description
        of the folds."""
        raise NotImplementedError(f"{type(self).__name__} calibrates on held-out images")

    def _extend_module(self, good: DataLoader, context: FitContext) -> bool:
        """Learn from more good images without refitting from scratch; False when the model cannot."""
        return False

    def shaped_module(self, n_train_images: int) -> nn.Module:
        """The fitted module's architecture with placeholder state, as fitting on `n_train_images` images
        would shape it: for complexity reports without fitting (settings checked first)."""
        self.check_params()
        tiles = len(self._layout(None)) if self.tiled else 1  # as a fit without a region of interest
        return self._framed(self._shaped_module(n_train_images * tiles), None)

    @property
    def input_resize(self) -> Resize:
        """The resize every input goes through before the model (to the working resolution)."""
        return Resize(self.image_size, self.resize)

    @property
    def input_side(self) -> int:
        """Side of what the fitted module sees: a tile, or the whole working resolution."""
        return self.tile_size or self.image_size

    @property
    def _input_setting(self) -> str:
        """The setting that sets `input_side`, as error messages name it."""
        return "tile_size" if self.tile_size else "image_size"

    @property
    def tiled(self) -> bool:
        """Whether the model sees tiles or a region of interest rather than the whole image as it is."""
        return self.tile_size is not None or self.roi is not None

    @property
    def region_of_interest(self) -> np.ndarray | None:
        """(H, W) bool mask at working resolution of the pixels inspected, or None for all of them."""
        self.check_is_fitted()
        return self.roi_mask_

    @property
    def tile_module_(self) -> nn.Module:
        """The fitted module that scores one model input (a tile when tiled)."""
        self.check_is_fitted()
        return tile_module_of(self.module_)

    def _layout(self, roi: np.ndarray | None) -> TileLayout:
        return TileLayout.plan(self.input_resize.size, self.tile_size, self.tile_overlap, roi)

    def _tile_loader(self, images: Any) -> DataLoader:
        """A loader of what the fitted module trains on: the tiles of `images` when tiled, else the images."""
        dataset = as_dataset(images, self.input_resize)
        if self.tiled:
            dataset = TiledDataset(dataset, self._layout(self.roi_mask_), self.roi_mask_)
        return loader(dataset, self.batch_size)

    def _framed(self, tile_module: nn.Module, roi: np.ndarray | None) -> nn.Module:
        """The module that scores whole images at working resolution, from one that scores model inputs,
        inspecting the (H, W) bool `roi` (None: all pixels)."""
        if not self.tiled:
            return tile_module
        roi_tensor = None if roi is None else torch.from_numpy(roi)
        return TiledModule(tile_module, self._layout(roi), roi_tensor, tile_batch=self.batch_size)

    def _per_image(self, tile_values: np.ndarray) -> np.ndarray:
        """Per-tile scores or maxima -> per image (their maximum), in the order `_tile_loader` cuts them."""
        return (
            tile_values.reshape(-1, len(self._layout(self.roi_mask_))).max(1) if self.tiled else tile_values
        )

    @property
    def runtime(self) -> str:
        """What runs the model: "torch" (an `Inferencer` names its export runtime)."""
        return "torch"

    @property
    def calibration(self) -> Calibration:
        """The thresholds and score normalisers (as `Inferencer.calibration`)."""
        self.check_is_fitted()
        return self.calibration_

    # ----------------------------------------------------------------------------- fit
    def fit(
        self,
        data: Any,
        val: Any = None,
        progress: bool = False,
        work_dir: str | Path | None = None,
        resume: bool = False,
    ) -> Self:
        """Learn what good looks like from good images, then calibrate the thresholds.

        Calibration needs scores of good images the model did not see. Given `val` (or a `DataSplits`
        whose val part came from a `val/` folder), those images are used. Otherwise out-of-fold detectors
        fit on every good image and score each with a model fitted on the other folds; the others hold
        10 % of the images out of training.

        Args:
            data: a `DataSplits`, a folder of good images, a list of image paths, `Record`s, or uint8
                arrays (H, W, 3).
            val: calibration images in any of the same forms (labelled defects among them allowed).
            progress: show progress bars.
            work_dir: folder where iterative models keep their training state after each epoch.
            resume: continue training from the state in `work_dir`.

        Returns:
            self, fitted.
        """
        self.check_params()
        context = FitContext.create(self.device, progress, work_dir, resume)
        train, val, source = self._split(data, val)
        torch.manual_seed(self.seed)
        resize = self.input_resize
        self.roi_mask_ = region_of_interest(self.roi, as_dataset(train, resize), resize, context.progress)
        train_loader = self._tile_loader(train)
        if self.tiled:
            layout = self._layout(self.roi_mask_)
            logger.info("%d tiles of %dx%d px per image", len(layout), *layout.tile)
        if val is None:
            logger.info("fitting %s on %d images, calibrating out of fold", self.name, len(train))
            module, scores, maxima, source = self._fit_out_of_fold(train_loader, context)
            self.module_ = self._framed(module, self.roi_mask_).eval()
            scores, maxima = self._per_image(scores), self._per_image(maxima)
            self._calibrate_from(scores, np.zeros(len(scores), dtype=int), maxima, None, source)
            return self
        logger.info("fitting %s on %d images (%d held out for calibration)", self.name, len(train), len(val))
        val_loader = loader(as_dataset(val, resize), self.batch_size)
        tile_module = self._fit_module(train_loader, self._tile_loader(val), context)
        self.module_ = self._framed(tile_module, self.roi_mask_).eval()
        self._calibrate_held_out(train, val, val_loader, source, context)
        return self

    def _calibrate_held_out(
        self, train: Any, val: Any, val_loader: DataLoader, source: str, context: FitContext
    ) -> None:
        """Calibrate on the images held out of training (a subclass may do better when they are few)."""
        self.calibrate(val_loader, progress=context.progress, source=source)

    def export_module(self) -> nn.Module:
        """A CPU copy of the fitted module in eval mode, as exports trace and check it.

        Detectors whose eager scoring takes a shortcut a graph cannot hold (PatchCore's approximate
        search) return the module as its graph computes.
        """
        self.check_is_fitted()
        return copy.deepcopy(self.module_).cpu().eval()

    def extend(self, good: Any, train: Any = None, progress: bool = False) -> Self:
        """Learn from more good images (e.g. ones a reviewer marked "actually good").

        Detectors whose fitted state can grow (PatchCore's memory bank) add them directly; the others are
        fitted again on `train` + `good`. Thresholds are left as they are: call `calibrate` afterwards.

        Args:
            good: good images in any form `fit` accepts.
            train: the original training images, needed by detectors that must refit.

        Raises:
            ConfigError: the detector must refit and `train` is missing.
        """
        self.check_is_fitted()
        device = next(iter(self.module_.buffers()), torch.empty(0)).device
        data = self._tile_loader(good)
        if self._extend_module(data, FitContext(device, progress)):
            return self
        if train is None:
            raise ConfigError(
                f"{type(self).__name__} refits to learn new good images: pass the training images"
            )
        calibration = self.calibration_
        # The new good images double as validation data for models that monitor one while training.
        combined = list(train) + list(good if isinstance(good, list | tuple) else [good])
        tile_module = self._fit_module(self._tile_loader(combined), data, FitContext(device, progress))
        self.module_ = self._framed(tile_module, self.roi_mask_).eval()
        self.calibration_ = calibration
        return self

    def _split(self, data: Any, val: Any) -> tuple[Any, Any, str]:
        """(training images, calibration images or None for out-of-fold, where the good scores come from)."""
        out_of_fold = self.calibration_scores == "out-of-fold"
        oof_source = "out-of-fold"
        held_out = HELD_OUT_SOURCE
        if val is not None:
            return (data.train if isinstance(data, DataSplits) else data), val, "validation images"
        if isinstance(data, DataSplits):
            if not data.val_carved:
                return data.train, data.val, "validation folder"
            if out_of_fold:
                return data.train + [r for r in data.val if r.label <= 0], None, oof_source
            return data.train, data.val, held_out
        if isinstance(data, str | Path) and Path(data).is_dir():
            fraction = 0.0 if out_of_fold else HELD_OUT_FRACTION
            splits = load_folder(data, test_fraction=0.0, val_fraction=fraction, seed=self.seed)
            return (splits.train, None, oof_source) if out_of_fold else (splits.train, splits.val, held_out)
        if isinstance(data, np.ndarray) and data.ndim == 4:
            data = list(data)
        if not isinstance(data, list | tuple) or len(data) < 2:
            raise DataError("fit needs at least 2 good images (calibration needs some the model did not see)")
        if out_of_fold:
            return list(data), None, oof_source
        order = np.random.default_rng(self.seed).permutation(len(data))
        n_val = max(1, round(HELD_OUT_FRACTION * len(data)))
        kept, carved = sorted(order[n_val:]), sorted(order[:n_val])
        return [data[i] for i in kept], [data[i] for i in carved], held_out

    # ----------------------------------------------------------------------------- raw inference
    @torch.inference_mode()
    def score_batch(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The model alone on a resized batch (B, 3, H, W) in [0, 1]: raw scores (B,) and maps (B, H, W).

        No decoding, resizing or post-processing: what benchmarks time and exports must reproduce.
        """
        self.check_is_fitted()
        return raw_scores(self.module_, images)

    # ----------------------------------------------------------------------------- thresholds
    def calibrate(
        self, val: Any, progress: bool = False, keep_good: bool = False, source: str = "validation images"
    ) -> Self:
        """Set the image and pixel thresholds and the score normalisers from calibration images.

        The thresholds follow `threshold_policy` (`ThresholdPolicy`); labelled defective images (Records
        with label 1) serve the "recall" and "f1" policies and the recall reported at the operating point,
        and their masks the pixel threshold.

        Args:
            val: calibration images the model did not train on.
            keep_good: keep the good calibration scores of the current calibration (e.g. out-of-fold ones)
                and add `val` to them, e.g. images a reviewer marked defective.
            source: where the good scores come from, as the operating point reports it.
        """
        self.check_is_fitted()
        data = (
            val
            if isinstance(val, DataLoader)
            else loader(as_dataset(val, self.input_resize), self.batch_size)
        )
        if len(data.dataset) == 0:
            raise DataError(
                "no validation images to set the threshold on: give fit() a val set or more images"
            )
        scores, maps, batches = raw_over(self.module_, data, progress, "calibrate")
        labels = np.concatenate([b.labels.numpy() for b in batches])
        good = labels <= 0  # unknown labels count as good: validation images come from the good set
        masks = [mask for b in batches for mask in b.masks]
        geometries = [g for b in batches for g in b.geometries]
        pixel_truth = [
            (geometry.crop_content(m), geometry.crop_content(mask.numpy()))
            for m, mask, geometry in zip(maps, masks, geometries, strict=True)
            if mask is not None
        ]
        good_maxima = content_maxima(maps[good], [g for g, ok in zip(geometries, good, strict=True) if ok])
        pixels = None
        if pixel_truth and (~good).any():
            pixels = (
                np.concatenate([m.ravel() for m, _ in pixel_truth]),
                np.concatenate([mask.ravel() for _, mask in pixel_truth]),
            )
        labels = np.where(good, 0, 1)
        if keep_good:
            before = self.calibration_
            scores = np.concatenate([before.good_scores, before.defective_scores, scores])
            labels = np.concatenate(
                [np.zeros(before.good_scores.size, int), np.ones(before.defective_scores.size, int), labels]
            )
            good_maxima = np.concatenate([before.good_map_maxima, good_maxima])
            source = before.source
        self._calibrate_from(scores, labels, good_maxima, pixels, source)
        return self

    def _calibrate_from(
        self,
        scores: np.ndarray,
        labels: np.ndarray,
        good_maxima: np.ndarray,
        pixels: tuple[np.ndarray, np.ndarray] | None,
        source: str,
    ) -> None:
        policy = self.policy()
        threshold = policy.image_threshold(scores, labels)
        pixel_threshold = policy.pixel_threshold(good_maxima, pixels)
        good = labels == 0
        self.calibration_ = Calibration(
            threshold, pixel_threshold, scores[good], good_maxima, source, scores[~good]
        )
        point = self.calibration_.operating_point()
        logger.info(
            "image threshold %.4g (%s, %s on %d good scores %s): guaranteed false-reject rate <= %.3g at "
            "95%% confidence; pixel threshold %.4g",
            threshold.value_,
            point["policy"],
            point["method"],
            point["n_good"],
            source,
            point["guaranteed_false_reject_rate"],
            pixel_threshold.value_,
        )

    def set_threshold(self, image: float | None = None, pixel: float | None = None) -> Self:
        """Fix the image and/or pixel threshold to a raw score chosen by the user."""
        self.check_is_fitted()
        self.calibration_ = self.calibration_.with_thresholds(image, pixel)
        return self

    # ----------------------------------------------------------------------------- predict
    def iter_predict(
        self, images: Any, batch_size: int | None = None, progress: bool = False
    ) -> Iterator[ScoredBatch]:
        """Predict batch by batch, so folders of any size stream through in bounded memory; yields each
        batch's names, decoded images and `Prediction`, as `Inferencer.iter_predict` does."""
        self.check_is_fitted()
        data = loader(as_dataset(images, self.input_resize), batch_size or self.batch_size)
        for batch in progress_bar(data, progress, "predict"):
            prediction = self.calibration_.apply(*self.score_batch(batch.images), batch.geometries)
            yield ScoredBatch(batch.paths, batch.originals, prediction)

    def predict(self, images: Any, batch_size: int | None = None, progress: bool = False) -> Prediction:
        """Score images: paths, a folder, `Record`s, uint8 arrays (H, W, 3), or a dataset.

        Returns:
            A `Prediction` over all images, maps at the model input size.
        """
        return Prediction.concatenate([b.prediction for b in self.iter_predict(images, batch_size, progress)])

    # ----------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the fitted detector to one file: params, weights, thresholds, normalisers, input spec.

        Raises:
            CheckpointError: `path` exists and `force` is False.
        """
        self.check_is_fitted()
        params, payload = self.get_params(), {"post": self.calibration_.to_dict()}
        return write_checkpoint(path, CHECKPOINT_KIND, self.name, params, self.module_, payload, force)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], path: str | Path) -> Self:
        """The fitted detector a checkpoint dict (read by `core.checkpoint.read_checkpoint`) describes.

        Raises:
            CheckpointError: the saved weights do not fit the saved settings.
        """
        detector = cls(**checkpoint["params"])
        state = checkpoint["state_dict"]
        roi = state.get("roi") if detector.tiled else None
        detector.roi_mask_ = None if roi is None or roi.numel() == 0 else roi.bool().numpy()
        if detector.tiled:
            state = {
                k.removeprefix("tile_module."): v for k, v in state.items() if k.startswith("tile_module.")
            }
        module = detector._framed(detector._build_module(state), detector.roi_mask_)
        module = restore_weights(module, checkpoint, path)
        detector.module_ = module.to(resolve_device(detector.device)).eval()
        detector.calibration_ = Calibration.from_dict(checkpoint["post"])
        if "source" not in checkpoint["post"]:
            warn_refit(path, checkpoint, "on a small held-out split")
        return detector


__all__ = ["CHECKPOINT_KIND", "Detector", "Prediction"]
