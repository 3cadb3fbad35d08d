"""Report figures: heatmap overlays and panels (OpenCV), ROC curves and score histograms (matplotlib).

Plots are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas attached directly, never
through ``pyplot``: this works headless, leaves the process-wide backend alone, and registers no figure
with pyplot, so nothing stays open however many figures are written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import ArrayLike

from defectlens.errors import ConfigError

__all__ = ["outline", "overlay", "panel", "save_image", "save_jpeg", "save_roc_curve", "save_score_histogram"]

logger = logging.getLogger(__name__)

PRED_COLOR = (255, 0, 0)  # red, RGB
GT_COLOR = (0, 255, 0)  # green
BOX_COLOR = (255, 255, 0)  # yellow
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@cache
def _jet_lut() -> np.ndarray:
    """(256, 3) uint8 RGB jet colour table: index 0 is blue (normal), 255 is red (anomalous)."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_JET)
    lut = np.ascontiguousarray(bgr[:, 0, ::-1])
    lut.setflags(write=False)
    return lut


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Return a contiguous uint8 (H, W, 3) copy of an RGB or grey uint8 image."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ConfigError(f"image must be uint8, got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(f"image must have shape (H, W, 3) or (H, W), got shape {np.asarray(image).shape}")
    return np.ascontiguousarray(img).copy()


def _as_mask(mask: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.shape != shape:
        raise ConfigError(f"{name} must have the image's shape {shape}, got shape {m.shape}")
    return (m > 0).astype(np.uint8)


def _thickness(h: int, w: int) -> int:
    return max(1, round(min(h, w) / 256))


def _draw_contour(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int) -> None:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if contours:
        cv2.drawContours(img, contours, -1, color, thickness, lineType=cv2.LINE_8)


def _fit_text_scale(text: str, max_width: int, max_height: int, thickness: int) -> float:
    """Largest font scale (<= 1) at which text fits the given box."""
    (tw, th), base = cv2.getTextSize(text, _FONT, 1.0, thickness)
    scale = min(1.0, max_width / max(tw, 1), max_height / max(th + base, 1))
    return max(scale, 0.2)


def overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    pred_mask: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    boxes: Sequence | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Blend the anomaly heatmap on the image and draw masks and boxes.

    The heatmap uses a fixed jet scale on [0, 1] (values outside are clipped, NaN shows as 0), so 0.5 (the
    threshold) has the same colour in every picture.

    Args:
        image: uint8 (H, W, 3) RGB image ((H, W) grey is accepted).
        anomaly_map: float (H, W) map normalised to [0, 1], 0.5 = threshold.
        pred_mask: Optional (H, W) predicted mask; its outline is drawn in red.
        gt_mask: Optional (H, W) ground-truth mask; its outline is drawn in green (on top of red).
        boxes: Optional ``(x0, y0, x1, y1[, score])`` boxes with x1/y1 exclusive, drawn in yellow with
            the score written above them.
        alpha: Heatmap weight in [0, 1].

    Returns:
        uint8 (H, W, 3) RGB picture.

    Raises:
        ConfigError: On wrong shapes or dtypes, or alpha outside [0, 1].
    """
    img = _as_rgb(image)
    h, w = img.shape[:2]
    amap = np.asarray(anomaly_map, dtype=np.float64)
    if amap.shape != (h, w):
        raise ConfigError(f"anomaly_map must have the image's shape {(h, w)}, got shape {amap.shape}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}")
    idx = np.rint(np.clip(np.nan_to_num(amap, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    heat = _jet_lut()[idx]
    out = cv2.addWeighted(img, 1.0 - float(alpha), heat, float(alpha), 0.0)
    t = _thickness(h, w)
    if pred_mask is not None:
        _draw_contour(out, _as_mask(pred_mask, (h, w), "pred_mask"), PRED_COLOR, t)
    if gt_mask is not None:
        _draw_contour(out, _as_mask(gt_mask, (h, w), "gt_mask"), GT_COLOR, t)
    for box in boxes or ():
        if len(box) not in (4, 5):
            raise ConfigError(f"each box must be (x0, y0, x1, y1[, score]), got {box!r}")
        x0, y0, x1, y1 = (round(float(v)) for v in box[:4])
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), BOX_COLOR, t)
        if len(box) == 5:
            text = f"{float(box[4]):.2f}"
            scale = max(0.3, min(h, w) / 512)
            (_, th), base = cv2.getTextSize(text, _FONT, scale, 1)
            ty = y0 - 3 if y0 - 3 - th >= 0 else min(h - 1, y1 + th + 2)
            cv2.putText(out, text, (x0, ty), _FONT, scale, BOX_COLOR, 1, cv2.LINE_AA)
    return out


def outline(mask: np.ndarray, color: tuple[int, int, int] = GT_COLOR) -> np.ndarray:
    """The outline of a mask on a transparent background, drawn as `overlay` draws it, to lay over an
    overlay of the same image.

    Args:
        mask: (H, W) mask, True (or > 0) inside.
        color: RGB colour of the outline (green, as the ground truth in `overlay`).

    Returns:
        uint8 (H, W, 4) RGBA picture, transparent off the outline.
    """
    shape = np.shape(mask)[:2]
    picture = np.zeros((*shape, 4), dtype=np.uint8)
    _draw_contour(picture, _as_mask(mask, shape, "mask"), (*color, 255), _thickness(*shape))
    return picture


def shrink(
    scale: float,
    image: np.ndarray,
    anomaly_map: np.ndarray,
    pred_mask: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    boxes: Sequence | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, list]:
    """The inputs of `panel`, resized by `scale` < 1 (area for the image, linear for the map, nearest for
    masks; boxes scaled, their scores kept), so that a report picture of a large image stays small."""
    img = _as_rgb(image)
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def mask(m: np.ndarray | None, name: str) -> np.ndarray | None:
        if m is None:
            return None
        small = cv2.resize(
            _as_mask(m, (h, w), name).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT
        )
        return small.astype(bool)

    scaled = [(*(float(v) * scale for v in box[:4]), *box[4:]) for box in boxes or ()]
    return (
        cv2.resize(img, size, interpolation=cv2.INTER_AREA),
        cv2.resize(np.asarray(anomaly_map, dtype=np.float32), size, interpolation=cv2.INTER_LINEAR),
        mask(pred_mask, "pred_mask"),
        mask(gt_mask, "gt_mask"),
        scaled,
    )


def panel(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    pred_mask: np.ndarray | None = None,
    gt_mask: np.ndarray | None = None,
    boxes: Sequence | None = None,
    title: str = "",
) -> np.ndarray:
    """Side-by-side picture: input | overlay | ground-truth mask (if given), under a title strip.

    Args:
        image, anomaly_map, pred_mask, gt_mask, boxes: As for ``overlay``.
        title: Text of the strip on top (ASCII; OpenCV fonts show other characters as '?').

    Returns:
        uint8 RGB array of shape (strip + H, 2W or 3W, 3); the strip is ``max(20, H // 8)`` pixels high.
    """
    img = _as_rgb(image)
    h, w = img.shape[:2]
    tiles = [img, overlay(img, anomaly_map, pred_mask, gt_mask, boxes)]
    if gt_mask is not None:
        gt = _as_mask(gt_mask, (h, w), "gt_mask") * np.uint8(255)
        tiles.append(np.stack([gt] * 3, axis=-1))
    body = np.concatenate(tiles, axis=1)
    strip_h = max(20, h // 8)
    strip = np.full((strip_h, body.shape[1], 3), 255, dtype=np.uint8)
    if title:
        scale = _fit_text_scale(title, body.shape[1] - 8, strip_h - 6, 1)
        (_, th), base = cv2.getTextSize(title, _FONT, scale, 1)
        y = (strip_h + th) // 2
        cv2.putText(strip, title, (4, y), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, body], axis=0)


def _prepare_path(path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _binary_inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    lab = np.asarray(labels).ravel().astype(np.int64)
    sc = np.asarray(scores, dtype=np.float64).ravel()
    if lab.size != sc.size:
        raise ConfigError(f"labels and scores must have the same length, got {lab.size} and {sc.size}")
    if not set(np.unique(lab).tolist()) <= {0, 1}:
        raise ConfigError(f"labels must be 0 (good) or 1 (defective), got values {sorted(set(lab.tolist()))}")
    if not np.all(np.isfinite(sc)):
        raise ConfigError("scores must be finite, got NaN/inf values")
    return lab, sc


def _both_classes(labels: ArrayLike, scores: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    lab, sc = _binary_inputs(labels, scores)
    n_bad = int(lab.sum())
    if n_bad == 0 or n_bad == lab.size:
        raise ConfigError(
            f"{what} needs good (0) and defective (1) labels, "
            f"got {lab.size - n_bad} good and {n_bad} defective"
        )
    return lab, sc


def _new_figure(size: tuple[float, float]):  # -> matplotlib.figure.Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.91)  # fixed margins: one draw per save
    FigureCanvasAgg(fig)
    return fig


def save_roc_curve(labels: ArrayLike, scores: ArrayLike, path: str | Path, title: str = "") -> Path:
    """Write the ROC curve with the AUROC in the legend.

    Args:
        labels: 0 (good) / 1 (defective), one per score.
        scores: Anomaly scores (raw or normalised; higher = more anomalous).
        path: Output file; the format follows the suffix (PNG when none). Parent folders are created.
        title: Figure title.

    Returns:
        The written path.

    Raises:
        ConfigError: If labels do not contain both classes.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    lab, sc = _both_classes(labels, scores, "a ROC curve")
    fpr, tpr, _ = roc_curve(lab, sc)
    auroc = roc_auc_score(lab, sc)
    p = _prepare_path(path)
    fig = _new_figure((4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="tab:blue", lw=2, label=f"AUROC = {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate")
    ax.set_title(title or "ROC curve")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.savefig(p, format=None if p.suffix else "png")
    logger.debug("wrote ROC curve to %s (AUROC %.4f)", p, auroc)
    return p


def save_operating_curve(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    path: str | Path,
    target_rate: float | None = None,
    title: str = "",
) -> Path:
    """Write recall against false-reject rate (log axis) with the operating point marked.

    Args:
        labels: 0 (good) / 1 (defective), one per score.
        scores: raw anomaly scores.
        threshold: the raw operating threshold; the point shows its false-reject rate and recall.
        path: output file (PNG when it has no suffix).
        target_rate: the false-reject rate the threshold was set for, drawn as a vertical line.
        title: figure title.

    Raises:
        ConfigError: labels without both classes.
    """
    from sklearn.metrics import roc_curve

    lab, sc = _both_classes(labels, scores, "a recall / false-reject curve")
    n_bad = int(lab.sum())
    false_reject, recall, _ = roc_curve(lab, sc)
    rejected = sc >= threshold
    point = (float(rejected[lab == 0].mean()), float(rejected[lab == 1].mean()))
    floor = 0.5 / (lab.size - n_bad)  # where a rate of 0 is drawn on the log axis
    p = _prepare_path(path)
    fig = _new_figure((5.5, 4.5))
    ax = fig.add_subplot()
    ax.step(
        np.maximum(false_reject, floor), recall, where="post", color="tab:blue", lw=2, label="test images"
    )
    if target_rate is not None:
        ax.axvline(
            target_rate, color="grey", ls="--", lw=1, label=f"target false-reject rate {target_rate:g}"
        )
    ax.plot(
        max(point[0], floor),
        point[1],
        "o",
        color="tab:red",
        ms=8,
        label=f"operating point: rejects {point[0]:.1%} good, {point[1]:.1%} defective",
    )
    ax.set_xscale("log")
    ax.set(xlim=(floor, 1), ylim=(0, 1.01), xlabel="False-reject rate (good parts rejected)")
    ax.set_ylabel("Recall (defective parts caught)")
    ax.set_title(title or "Recall against false-reject rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.savefig(p, format=None if p.suffix else "png")
    return p


def save_score_histogram(
    labels: ArrayLike, scores: ArrayLike, threshold: float, path: str | Path, title: str = ""
) -> Path:
    """Write good vs defective score histograms on shared bins with the threshold as a vertical line.

    The legend gives, for each class, how many scores fall below the threshold and how many at or above it.

    Args:
        labels: 0 (good) / 1 (defective), one per score; either class may be absent.
        scores: Anomaly scores on the same scale as ``threshold``.
        threshold: Operating threshold (``score >= threshold`` is defective).
        path: Output file; the format follows the suffix (PNG when none). Parent folders are created.
        title: Figure title.

    Returns:
        The written path.
    """
    lab, sc = _binary_inputs(labels, scores)
    thr = float(threshold)
    lo = float(min(sc.min(), thr)) if sc.size else thr
    hi = float(max(sc.max(), thr)) if sc.size else thr
    if hi - lo <= 0:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41)
    p = _prepare_path(path)
    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    for cls, name, color in ((0, "good", "tab:green"), (1, "defective", "tab:red")):
        s = sc[lab == cls]
        if s.size == 0:
            continue
        above = int(np.count_nonzero(s >= thr))
        ax.hist(
            s,
            bins=bins,
            alpha=0.55,
            color=color,
            label=f"{name} n={s.size}: {s.size - above} below, {above} at/above",
        )
    ax.axvline(thr, color="black", ls="--", lw=1.5, label=f"threshold = {thr:.4g}")
    ax.set(xlabel="anomaly score", ylabel="count")
    ax.set_title(title or "Score distribution")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(p, format=None if p.suffix else "png")
    logger.debug("wrote score histogram to %s", p)
    return p


def encode_png(array: np.ndarray) -> bytes:
    """A uint8 RGB (H, W, 3), RGBA (H, W, 4) or grey (H, W) array (bool masks as 0/255) encoded as PNG
    bytes."""
    import io

    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype != np.uint8:
        raise ConfigError(f"save_image needs a uint8 (or bool) array, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ConfigError(f"save_image needs shape (H, W, 3), (H, W, 4) or (H, W), got shape {arr.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_image(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 RGB (H, W, 3), RGBA (H, W, 4) or grey (H, W) array as PNG (bool masks as 0/255).

    Args:
        array: The image.
        path: Output file, written in PNG format whatever its suffix. Parent folders are created.

    Returns:
        The written path.
    """
    data = encode_png(array)
    p = _prepare_path(path)
    p.write_bytes(data)
    return p


def save_jpeg(array: np.ndarray, path: str | Path, quality: int = 90) -> Path:
    """Write a uint8 RGB (H, W, 3) or grey (H, W) array as JPEG, for pictures where its losses do not
    show: a 192-px overlay of an MTD image takes 6 kB and 0.2 ms to encode, as PNG 27 kB and 5.8 ms.

    Raises:
        ConfigError: On a wrong dtype or shape, or quality outside [1, 95].
    """
    from PIL import Image

    if not 1 <= quality <= 95:
        raise ConfigError(f"quality must be in [1, 95], got {quality!r}")
    p = _prepare_path(path)
    # full-resolution colour (no chroma subsampling) keeps one-pixel box lines yellow
    Image.fromarray(_as_rgb(array)).save(p, format="JPEG", quality=quality, subsampling=0)
    return p
