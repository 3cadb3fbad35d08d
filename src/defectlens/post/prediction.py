"""The one post-processing path: raw model outputs -> normalised scores, labels and masks.

A `Calibration` (image and pixel thresholds plus the good calibration statistics behind the score
normalisers) is fitted once, saved in checkpoints and exported artefacts as the same dict, and applied
by the torch detector, the torch-free inferencer and the service alike. The image label is the one
decision: masks are drawn on images judged anomalous only. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from defectlens.data.transforms import Geometry
from defectlens.errors import ConfigError
from defectlens.post.normalization import ScoreNormalizer
from defectlens.post.threshold import FixedThreshold, Threshold, describe_operating_point


@dataclass(frozen=True)
class Prediction:
    """What a detector says about a batch of images. Higher = more anomalous everywhere.

    Attributes:
        raw_score: (B,) the model's own image scores.
        raw_map: (B, H, W) the model's own anomaly maps at the model input size.
        score: (B,) scores normalised so that the image threshold sits at 0.5.
        anomaly_map: (B, H, W) maps normalised so that the pixel threshold sits at 0.5.
        label: (B,) True where the image is judged anomalous (score >= 0.5).
        mask: (B, H, W) True where a pixel is judged anomalous (anomaly_map >= 0.5) on an image judged
            anomalous; all False on an image judged normal.
        geometries: where each original image sits inside the model input, to map results back.
    """

    raw_score: np.ndarray
    raw_map: np.ndarray
    score: np.ndarray
    anomaly_map: np.ndarray
    label: np.ndarray
    mask: np.ndarray
    geometries: list[Geometry]

    @staticmethod
    def concatenate(parts: Sequence[Prediction]) -> Prediction:
        """One prediction over the images of several batches."""
        arrays = ("raw_score", "raw_map", "score", "anomaly_map", "label", "mask")
        return Prediction(
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in arrays},
            geometries=[g for p in parts for g in p.geometries],
        )


@dataclass(frozen=True)
class ScoredBatch:
    """One batch out of `iter_predict` (of a `Detector` or an `Inferencer`): the images' names (paths),
    their pixels as decoded ((H, W, 3) uint8, for overlays and reports without decoding again) and their
    `Prediction`."""

    names: list[str]
    images: list[np.ndarray]
    prediction: Prediction


@dataclass
class Calibration:
    """Fitted thresholds and the statistics of good calibration images that scale the scores.

    Args:
        threshold: fitted image-score threshold (raw units).
        pixel_threshold: fitted anomaly-map threshold (raw units).
        good_scores: raw scores of the good calibration images (out-of-fold or held out).
        good_map_maxima: maximum of each good calibration image's anomaly map (over its content).
        source: where the good scores come from, e.g. "out-of-fold (5 folds)" or "held-out split".
        defective_scores: raw scores of labelled defective calibration images, if any were given.
    """

    threshold: Threshold
    pixel_threshold: Threshold
    good_scores: np.ndarray
    good_map_maxima: np.ndarray
    source: str = "validation images"
    defective_scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    normalizer: ScoreNormalizer = field(init=False, repr=False)
    pixel_normalizer: ScoreNormalizer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.good_scores = np.asarray(self.good_scores, dtype=np.float64)
        self.good_map_maxima = np.asarray(self.good_map_maxima, dtype=np.float64)
        self.defective_scores = np.asarray(self.defective_scores, dtype=np.float64)
        self.normalizer = ScoreNormalizer().fit(self.threshold.value_, self.good_scores)
        self.pixel_normalizer = ScoreNormalizer().fit(self.pixel_threshold.value_, self.good_map_maxima)

    @property
    def image_threshold(self) -> float:
        """The raw image-score threshold: a score at or above it is anomalous."""
        return float(self.threshold.value_)

    @property
    def pixel_threshold_value(self) -> float:
        """The raw anomaly-map threshold: pixels at or above it belong to a region."""
        return float(self.pixel_threshold.value_)

    def with_thresholds(self, image: float | None = None, pixel: float | None = None) -> Calibration:
        """A copy with the image and/or pixel threshold fixed to raw values chosen by a user."""
        return Calibration(
            FixedThreshold(image).fit(self.good_scores) if image is not None else self.threshold,
            FixedThreshold(pixel).fit(self.good_map_maxima) if pixel is not None else self.pixel_threshold,
            self.good_scores,
            self.good_map_maxima,
            self.source,
            self.defective_scores,
        )

    def operating_point(self) -> dict[str, Any]:
        """The operating point as a quality engineer reads it, for metrics.json and the printed summary.

        `describe_operating_point`, plus the recall on labelled defective calibration images when there
        were any.
        """
        point = describe_operating_point(self.threshold, self.good_scores, self.source)
        if self.defective_scores.size:
            point["n_defective"] = int(self.defective_scores.size)
            point["calibration_recall"] = float(np.mean(self.defective_scores >= self.image_threshold))
        return point

    def apply(self, raw_score: np.ndarray, raw_map: np.ndarray, geometries: Sequence[Geometry]) -> Prediction:
        """Normalise raw outputs and apply the thresholds."""
        score = self.normalizer.transform(np.asarray(raw_score, dtype=np.float64))
        anomaly_map = self.pixel_normalizer.transform(np.asarray(raw_map, dtype=np.float32))
        label = score >= 0.5
        return Prediction(
            raw_score=np.asarray(raw_score),
            raw_map=np.asarray(raw_map),
            score=score,
            anomaly_map=anomaly_map,
            label=label,
            mask=(anomaly_map >= 0.5) & label[:, None, None],
            geometries=list(geometries),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, as stored in checkpoints (`post`) and export manifests."""
        return {
            "threshold": self.threshold.to_dict(),
            "pixel_threshold": self.pixel_threshold.to_dict(),
            "good_scores": self.good_scores.tolist(),
            "good_map_maxima": self.good_map_maxima.tolist(),
            "source": self.source,
            "defective_scores": self.defective_scores.tolist(),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Calibration:
        """Rebuild from `to_dict` output (also of defectlens versions before `source` was recorded).

        Raises:
            ConfigError: a key is missing or a threshold is not fitted.
        """
        missing = {"threshold", "pixel_threshold", "good_scores", "good_map_maxima"} - set(data)
        if missing:
            raise ConfigError(f"calibration is missing {sorted(missing)}")
        thresholds = [Threshold.from_dict(data[key]) for key in ("threshold", "pixel_threshold")]
        if not all(t.is_fitted for t in thresholds):
            raise ConfigError("calibration thresholds must carry their fitted values")
        return Calibration(
            *thresholds,
            np.asarray(data["good_scores"]),
            np.asarray(data["good_map_maxima"]),
            data.get("source", "validation images"),
            np.asarray(data.get("defective_scores", [])),
        )
