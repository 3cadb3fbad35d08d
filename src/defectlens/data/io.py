"""Reading images and masks from disk.

Every reader returns plain NumPy arrays in one fixed layout, whatever the file holds:

- :func:`read_image` -> ``(H, W, 3) uint8`` RGB, EXIF orientation applied;
- :func:`read_mask`  -> ``(H, W) bool``, True where the mask pixel is above zero.

Any failure (missing file, not an image, truncated data) raises
:class:`~defectlens.errors.DataError` with the message ``cannot read image <path>: <reason>``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from defectlens.errors import DataError, ImageTooLarge

__all__ = [
    "IMAGE_SUFFIXES",
    "check_readable",
    "is_image_file",
    "list_images",
    "read_image",
    "read_mask",
    "read_size",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes treated as images when a folder is listed (compared case-insensitively)."""

# EXIF orientation values (tag 274) that rotate the picture by 90 or 270 degrees, i.e. swap H and W.
_EXIF_ORIENTATION_TAG = 274
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# Integer modes whose samples are scaled (not clipped) onto 0..255.
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_UINT16_MAX = 65535
_INT32_MAX = 2**31 - 1


def is_image_file(path: Path) -> bool:
    """True for a non-hidden regular file whose suffix is in :data:`IMAGE_SUFFIXES`."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Not recursive; only suffixes in :data:`IMAGE_SUFFIXES` (any case); hidden files (names starting
    with ``.``, e.g. ``.DS_Store`` or macOS ``._x.png`` shadows) are skipped.

    Raises:
        DataError: ``folder`` does not exist or is not a directory.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise DataError(f"image folder {folder} is not a directory")
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def _reason(path: Path, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) or not path.exists():
        return "file does not exist"
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return "it is a directory, not a file"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_error(path: Path, exc: BaseException) -> DataError:
    return DataError(f"cannot read image {path}: {_reason(path, exc)}")


def read_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header only, after EXIF orientation (no pixel decoding).

    Raises:
        DataError: the file is missing or not a readable image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            try:
                orientation = img.getexif().get(_EXIF_ORIENTATION_TAG)
            except Exception:  # a broken EXIF block must not make a readable image unreadable
                orientation = None
    except Exception as exc:
        raise _open_error(path, exc) from exc
    if orientation in _SWAPPING_ORIENTATIONS:
        return width, height
    return height, width


def check_readable(path: str | Path) -> None:
    """Open the header of ``path`` (format and size only) so bad files fail early.

    Raises:
        DataError: ``cannot read image <path>: <reason>``.
    """
    read_size(path)


def _load(path: Path) -> Image.Image:
    """Decode the whole file (so truncation is detected here) and apply EXIF orientation."""
    try:
        with Image.open(path) as img:
            img.load()
            oriented = ImageOps.exif_transpose(img)
            if oriented is img:
                # exif_transpose returns the same object when there is nothing to do; detach it from
                # the file handle that the `with` block closes.
                oriented = img.copy()
        return oriented
    except Exception as exc:
        raise _open_error(path, exc) from exc


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` linearly onto ``0..255`` (rounded) and clip whatever lies outside."""
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _integer_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16- or 32-bit integer image onto 0..255 over its full integer range.

    ``I;16*`` modes use 0..65535 (65535 -> 255, 32768 -> 128). Mode ``I`` is 32-bit signed, but most
    ``I`` files hold 16-bit samples (older Pillow opened 16-bit PNGs as ``I``): when every sample lies
    in 0..65535 the 16-bit range is used, otherwise 0..2**31-1 for non-negative data and the whole
    signed range -2**31..2**31-1 when negative samples are present.
    """
    if mode in _UINT16_MODES:
        return _scale_to_uint8(values, 0, _UINT16_MAX)
    if values.size == 0:
        return values.astype(np.uint8)
    vmin, vmax = int(values.min()), int(values.max())
    if vmin >= 0 and vmax <= _UINT16_MAX:
        return _scale_to_uint8(values, 0, _UINT16_MAX)
    if vmin >= 0:
        return _scale_to_uint8(values, 0, _INT32_MAX)
    return _scale_to_uint8(values, -(2**31), _INT32_MAX)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Mode ``F``: data in 0..1 is scaled by 255; anything else is min-max stretched; NaN -> 0."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    vmin, vmax = float(values[finite].min()), float(values[finite].max())
    values = np.where(finite, values, vmin)
    if vmin >= 0.0 and vmax <= 1.0:
        return _scale_to_uint8(values, 0.0, 1.0)
    if vmax == vmin:
        return np.zeros(values.shape, np.uint8)
    return _scale_to_uint8(values, vmin, vmax)


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        rgb = np.asarray(img)
    elif mode == "L":
        gray = np.asarray(img)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode in ("1", "LA", "La"):
        gray = np.asarray(img.convert("L"))
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode in ("RGBA", "RGBX"):
        rgb = np.asarray(img)[:, :, :3]
    elif mode in ("P", "PA"):
        # Through RGBA so palettes with transparency convert cleanly; the alpha is then dropped and
        # every pixel keeps its palette colour.
        rgb = np.asarray(img.convert("RGBA"))[:, :, :3]
    elif mode in _UINT16_MODES or mode.startswith("I"):
        gray = _integer_to_uint8(np.asarray(img), mode)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    elif mode == "F":
        gray = _float_to_uint8(np.asarray(img))
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
    else:  # CMYK, YCbCr, LAB, HSV, ...
        rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def as_rgb(array: Any, name: str = "image") -> np.ndarray:
    """An in-memory image as ``(H, W, 3) uint8`` RGB: uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
    ``(H, W, 4)`` (alpha dropped), or float arrays with values in ``[0, 1]``.

    Raises:
        DataError: naming `name`, for any other shape, a non-numeric array or floats outside [0, 1].
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise DataError(f"{name} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.dtype != np.uint8:
        numeric = array.dtype.kind in "fiu" and np.isfinite(array).all()
        if not numeric or array.min() < 0 or array.max() > 1:
            raise DataError(f"{name}: non-uint8 arrays must hold numbers in [0, 1], got dtype {array.dtype}")
        array = np.round(array * 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Accepts every Pillow mode: ``1``, ``L``, ``LA``, ``P`` (with or without transparency), ``RGB``,
    ``RGBA`` (alpha dropped), ``CMYK``, 16-bit ``I;16``/``I;16B`` and 32-bit ``I`` (scaled over the
    full integer range, e.g. 65535 -> 255, not clipped), and float ``F`` (0..1 scaled by 255, other
    ranges min-max stretched). Grey images are repeated over the three channels. EXIF orientation is
    applied, so ``H, W`` are the displayed height and width.

    Raises:
        DataError: ``cannot read image <path>: <reason>`` (missing, not an image, truncated, ...).
    """
    path = Path(path)
    img = _load(path)
    try:
        return _to_rgb(img)
    except Exception as exc:
        raise _open_error(path, exc) from exc


def decode_image(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF...) as ``(H, W, 3) uint8`` RGB, like `read_image`.

    Args:
        data: the encoded file.
        name: what error messages call it.
        max_pixels: refuse larger images from their header, before decoding any pixel.

    Raises:
        DataError: empty, not an image, truncated, or over `max_pixels` (the message says which).
    """
    if not data:
        raise DataError(f"cannot read image {name}: it is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(
                    f"image {name} has {width}x{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,}"
                )
            img.load()
            oriented = ImageOps.exif_transpose(img)
            return _to_rgb(oriented if oriented is not img else img.copy())
    except DataError:
        raise
    except UnidentifiedImageError as exc:
        raise DataError(f"cannot read image {name}: not an image in a format Pillow knows") from exc
    except Exception as exc:
        text = str(exc).strip()
        raise DataError(
            f"cannot read image {name}: {type(exc).__name__}{': ' + text if text else ''}"
        ) from exc


def read_mask(path: str | Path) -> np.ndarray:
    """Read a ground-truth mask as ``(H, W) bool``: True where the pixel is above zero.

    Any mode is accepted (``1``, ``L``, 16-bit, float, palette, RGB...). For colour masks a pixel is
    True when any colour channel is above zero; palette masks are judged by their palette colour;
    an alpha channel is ignored. EXIF orientation is applied, as for :func:`read_image`. Lossy (JPEG)
    masks are binarised at ``> 0`` too, so compression noise around the edges counts as defect.

    Raises:
        DataError: ``cannot read image <path>: <reason>``.
    """
    path = Path(path)
    img = _load(path)
    try:
        mode = img.mode
        if mode in ("P", "PA"):
            values = np.asarray(img.convert("RGBA"))[:, :, :3]
        elif mode in ("LA", "La"):
            values = np.asarray(img.convert("L"))
        elif mode in ("RGBA", "RGBX"):
            values = np.asarray(img)[:, :, :3]
        elif mode in ("1", "L", "RGB", "F") or mode.startswith("I"):
            values = np.asarray(img)
        else:  # CMYK, YCbCr, ...
            values = np.asarray(img.convert("RGB"))
        values = np.nan_to_num(values) if values.dtype.kind == "f" else values
        mask = values > 0
        if mask.ndim == 3:
            mask = mask.any(axis=2)
        return np.ascontiguousarray(mask, dtype=bool)
    except Exception as exc:
        raise _open_error(path, exc) from exc
