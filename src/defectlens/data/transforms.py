"""Fitting images of any size into the fixed model input, and mapping results back.

:class:`Resize` turns an ``(H, W, 3) uint8`` image into a ``(3, S_h, S_w) float32`` model input and
records a :class:`Geometry` that says where the picture sits inside that input. Anomaly maps computed
at input resolution go back to the file's own pixel grid with :meth:`Geometry.to_original`, so
pixel metrics and overlays are always at original resolution.

Two modes:

- ``"squash"``: plain resize to ``(S_h, S_w)``; the aspect ratio changes, nothing is padded.
- ``"pad"``: letterbox; scale so the longer side fits (aspect kept), centre, pad with 0.

Interpolation: images use ``cv2.INTER_AREA`` along an axis that shrinks and ``cv2.INTER_LINEAR``
along an axis that grows (a squash that shrinks one axis and grows the other is done in two passes).
Masks use nearest neighbour (``cv2.INTER_NEAREST_EXACT``, which samples pixel centres like PIL and
so stays aligned with the area/linear-resized image; plain ``cv2.INTER_NEAREST`` is shifted by up to
half a pixel). Nearest neighbour is what MVTec AD tooling (anomalib) uses; its cost is that a defect
thinner than one input pixel may disappear from the resized mask, which is one more reason to compute
pixel metrics at original resolution.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defectlens.errors import ConfigError

__all__ = ["Geometry", "RESIZE_MODES", "Resize"]

RESIZE_MODES: tuple[str, ...] = ("pad", "squash")
MIN_SIZE = 32


def _pair(value: Any, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"geometry {name} must be a sequence of ints, got {value!r}") from exc


@dataclass(frozen=True)
class Geometry:
    """Where the original image sits inside the model input.

    Attributes:
        original_size: ``(H, W)`` of the file (after EXIF orientation).
        content_box: ``(top, left, height, width)`` of the resized picture inside the model input.
        input_size: ``(S_h, S_w)`` of the model input, when known (always set by :class:`Resize`).
    """

    original_size: tuple[int, int]
    content_box: tuple[int, int, int, int]
    input_size: tuple[int, int] | None = None

    def crop_content(self, array: Any) -> Any:
        """``(..., S_h, S_w)`` -> ``(..., height, width)``: drop the padding (NumPy or torch)."""
        top, left, height, width = self.content_box
        return array[..., top : top + height, left : left + width]

    def to_original(self, anomaly_map: Any) -> np.ndarray:
        """Map an input-resolution anomaly map back onto the original ``(H, W)`` pixel grid.

        ``anomaly_map`` is ``(S_h, S_w)`` (leading singleton axes are dropped; a torch tensor is
        accepted). A map of another size is first resized to ``input_size`` when that is known. The
        padding is cropped and the rest resized with ``cv2.INTER_LINEAR``; returns ``float32``.
        """
        if hasattr(anomaly_map, "detach"):  # torch.Tensor
            anomaly_map = anomaly_map.detach().cpu().numpy()
        amap = np.asarray(anomaly_map, dtype=np.float32)
        while amap.ndim > 2 and amap.shape[0] == 1:
            amap = amap[0]
        if amap.ndim != 2:
            raise ValueError(f"anomaly map must be 2-D (S_h, S_w), got shape {tuple(amap.shape)}")
        if self.input_size is not None and tuple(amap.shape) != tuple(self.input_size):
            in_h, in_w = self.input_size
            amap = cv2.resize(np.ascontiguousarray(amap), (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        top, left, height, width = self.content_box
        if amap.shape[0] < top + height or amap.shape[1] < left + width:
            raise ValueError(
                f"anomaly map of shape {tuple(amap.shape)} is smaller than the content box "
                f"{self.content_box} (top, left, height, width)"
            )
        crop = np.ascontiguousarray(self.crop_content(amap))
        out_h, out_w = self.original_size
        if crop.shape == (out_h, out_w):
            return crop.astype(np.float32, copy=True)
        return cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_LINEAR).astype(np.float32)

    def to_dict(self) -> dict[str, list[int] | None]:
        """JSON-friendly form; :meth:`from_dict` reads it back."""
        return {
            "original_size": list(self.original_size),
            "content_box": list(self.content_box),
            "input_size": None if self.input_size is None else list(self.input_size),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict` (``input_size`` may be absent)."""
        try:
            original = _pair(data["original_size"], "original_size")
            box = _pair(data["content_box"], "content_box")
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"geometry needs 'original_size' and 'content_box', got {data!r}") from exc
        raw_input = data.get("input_size")
        input_size = None if raw_input is None else _pair(raw_input, "input_size")
        if len(original) != 2 or len(box) != 4 or (input_size is not None and len(input_size) != 2):
            raise ConfigError(
                f"geometry original_size must have 2 values, content_box 4 and input_size 2, got {data!r}"
            )
        return cls(original, box, input_size)  # type: ignore[arg-type]


def _check_size(size: Any) -> tuple[int, int]:
    def ok(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= MIN_SIZE

    if ok(size):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(ok(v) for v in size):
        return int(size[0]), int(size[1])
    raise ConfigError(
        f"resize size must be an int >= {MIN_SIZE} or a (height, width) pair of ints >= {MIN_SIZE}, "
        f"got {size!r}"
    )


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def _resize_smooth(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area interpolation along shrinking axes, linear along growing ones."""
    src_h, src_w = array.shape[:2]
    if (src_h, src_w) == (height, width):
        return array
    array = np.ascontiguousarray(array)
    if height <= src_h and width <= src_w:
        return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA)
    if height >= src_h and width >= src_w:
        return cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    # One axis shrinks, the other grows: one pass per axis, each with its own interpolation.
    w_interp = cv2.INTER_AREA if width < src_w else cv2.INTER_LINEAR
    h_interp = cv2.INTER_AREA if height < src_h else cv2.INTER_LINEAR
    array = cv2.resize(array, (width, src_h), interpolation=w_interp)
    return cv2.resize(array, (width, height), interpolation=h_interp)


class Resize:
    """Fit images (and their masks) into a fixed ``(S_h, S_w)`` model input.

    Args:
        size: ``S`` for a square input or ``(S_h, S_w)``; every side an int >= 32.
        mode: ``"squash"`` (plain resize) or ``"pad"`` (aspect-preserving letterbox, padded with 0).

    Raises:
        ConfigError: ``size`` or ``mode`` is not allowed (the message names the setting and value).
    """

    def __init__(self, size: int | tuple[int, int] = 256, mode: str = "squash") -> None:
        self.size: tuple[int, int] = _check_size(size)
        if mode not in RESIZE_MODES:
            raise ConfigError(f"resize mode must be one of {sorted(RESIZE_MODES)}, got {mode!r}")
        self.mode: str = mode

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, mode={self.mode!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resize) and (self.size, self.mode) == (other.size, other.mode)

    def __hash__(self) -> int:
        return hash((self.size, self.mode))

    def geometry(self, original_size: tuple[int, int]) -> Geometry:
        """The :class:`Geometry` an image of ``original_size = (H, W)`` gets, without any pixels."""
        src_h, src_w = (int(v) for v in original_size)
        if src_h < 1 or src_w < 1:
            raise ValueError(f"image size must be positive, got {original_size!r}")
        out_h, out_w = self.size
        if self.mode == "squash":
            box = (0, 0, out_h, out_w)
        else:
            scale = min(out_h / src_h, out_w / src_w)
            height = min(out_h, max(1, _round(src_h * scale)))
            width = min(out_w, max(1, _round(src_w * scale)))
            box = ((out_h - height) // 2, (out_w - width) // 2, height, width)
        return Geometry((src_h, src_w), box, (out_h, out_w))

    def image(self, rgb: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """``(H, W, 3) uint8`` -> ``(3, S_h, S_w) float32`` in ``[0, 1]``, and its :class:`Geometry`."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {rgb.shape} dtype {rgb.dtype}")
        geometry = self.geometry(rgb.shape[:2])
        top, left, height, width = geometry.content_box
        resized = _resize_smooth(rgb, height, width)
        out = np.zeros((3, *self.size), dtype=np.float32)
        out[:, top : top + height, left : left + width] = resized.transpose(2, 0, 1)
        out *= np.float32(1.0 / 255.0)
        return out, geometry

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """``(H, W) bool`` -> ``(S_h, S_w) bool`` with the same geometry as :meth:`image`.

        Nearest-neighbour sampling (``cv2.INTER_NEAREST_EXACT``); the padding is False.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
        geometry = self.geometry(mask.shape)
        top, left, height, width = geometry.content_box
        src = np.ascontiguousarray(mask > 0, dtype=np.uint8)
        if src.shape != (height, width):
            src = cv2.resize(src, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        out = np.zeros(self.size, dtype=bool)
        out[top : top + height, left : left + width] = src > 0
        return out
