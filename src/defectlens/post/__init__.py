"""Post-processing: thresholds, score normalisation and the three task outputs (numpy only)."""

from defectlens.post.normalization import ScoreNormalizer
from defectlens.post.tasks import TASKS, check_task, classify, detect, segment
from defectlens.post.threshold import (
    F1Threshold,
    FixedThreshold,
    QuantileThreshold,
    Threshold,
    adaptive_threshold,
)

__all__ = [
    "TASKS",
    "F1Threshold",
    "FixedThreshold",
    "QuantileThreshold",
    "ScoreNormalizer",
    "Threshold",
    "adaptive_threshold",
    "check_task",
    "classify",
    "detect",
    "segment",
]
