"""The three task outputs (as in OpenVINO Training Extensions) from normalised scores and maps.

All functions take values already passed through ``ScoreNormalizer`` so the decision boundary is 0.5,
and ``value >= 0.5`` is anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectlens.errors import ConfigError

__all__ = ["TASKS", "Regions", "check_task", "classify", "detect", "regions", "segment"]

TASKS: tuple[str, ...] = ("classification", "segmentation", "detection")
_CUT = 0.5

Box = tuple[int, int, int, int, float]


def check_task(task: str) -> str:
    """Validate a task name (case and surrounding spaces are ignored).

    Returns:
        The canonical task name, one of ``TASKS``.

    Raises:
        ConfigError: If the task is not one of ``TASKS``.
    """
    name = task.strip().lower() if isinstance(task, str) else None
    if name not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    return name


def classify(normalized_scores: np.ndarray) -> np.ndarray:
    """Image-level decision.

    Args:
        normalized_scores: (B,) normalised image scores.

    Returns:
        (B,) bool, True where the score is >= 0.5 (anomalous).
    """
    return np.asarray(normalized_scores) >= _CUT


def segment(normalized_map: np.ndarray) -> np.ndarray:
    """Pixel-level decision.

    Args:
        normalized_map: (H, W) or (B, H, W) normalised anomaly map.

    Returns:
        Bool mask of the same shape, True where the map is >= 0.5.

    Raises:
        ConfigError: If the map is not 2-D or 3-D.
    """
    arr = np.asarray(normalized_map)
    if arr.ndim not in (2, 3):
        raise ConfigError(f"normalized_map must have shape (H, W) or (B, H, W), got shape {arr.shape}")
    return arr >= _CUT


def detect(normalized_map: np.ndarray, min_area: int = 16) -> list[Box]:
    """Boxes around the anomalous regions of one map.

    Each 8-connected component of ``map >= 0.5`` with at least ``min_area`` pixels gives one box.

    Args:
        normalized_map: One (H, W) normalised anomaly map.
        min_area: Smallest component, in pixels, that gives a box (>= 1).

    Returns:
        ``[(x0, y0, x1, y1, score), ...]`` with x1/y1 exclusive and score the maximum of the map inside the
        component (not the box), sorted by score descending (ties keep raster order of the components).
        An empty list when nothing reaches 0.5.

    Raises:
        ConfigError: If the map is not 2-D or min_area is not a positive integer.
    """
    arr = np.asarray(normalized_map)
    if arr.ndim != 2:
        raise ConfigError(f"normalized_map must have shape (H, W) for detect, got shape {arr.shape}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ConfigError(f"min_area must be an integer >= 1, got {min_area!r}")
    mask = arr >= _CUT
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    values = arr.astype(np.float64, copy=False)
    boxes: list[Box] = []
    for i in range(1, n):  # label 0 is the background
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        window = labels[y : y + h, x : x + w] == i
        score = float(values[y : y + h, x : x + w][window].max())
        boxes.append((x, y, x + w, y + h, score))
    boxes.sort(key=lambda b: -b[4])
    return boxes


@dataclass(frozen=True)
class Regions:
    """What an image's map shows, decided together with its image label (one decision per image).

    Attributes:
        mask: (H, W) bool, the pixels judged defective: all False on an image judged normal.
        boxes: the defect boxes (see `detect`): empty on an image judged normal.
        below_image_threshold: on an image judged normal, the boxes of regions above the pixel threshold,
            which are reported as such and never as defects; empty on an anomalous image.
    """

    mask: np.ndarray
    boxes: list[Box]
    below_image_threshold: list[Box]


def regions(normalized_map: np.ndarray, anomalous: bool, min_area: int = 16) -> Regions:
    """Masks and boxes of one image, drawn only when the image label says anomalous.

    Args:
        normalized_map: the image's (H, W) normalised anomaly map.
        anomalous: the image label (its normalised score >= 0.5).
        min_area: smallest component that gives a box, in pixels.
    """
    boxes = detect(normalized_map, min_area)
    if anomalous:
        return Regions(segment(normalized_map), boxes, [])
    return Regions(np.zeros(np.shape(normalized_map), dtype=bool), [], boxes)
