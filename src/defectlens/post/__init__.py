"""Post-processing: thresholds, score normalisation and the three task outputs (numpy only)."""

from defectlens.post.normalization import ScoreNormalizer
from defectlens.post.tasks import TASKS, check_task, classify, detect, segment
from defectlens.post.threshold import (
    POLICIES,
    F1Threshold,
    FalseRejectThreshold,
    FixedThreshold,
    QuantileThreshold,
    RecallThreshold,
    Threshold,
    ThresholdPolicy,
    false_reject_bound,
)

__all__ = [
    "POLICIES",
    "TASKS",
    "F1Threshold",
    "FalseRejectThreshold",
    "FixedThreshold",
    "QuantileThreshold",
    "RecallThreshold",
    "ScoreNormalizer",
    "Threshold",
    "ThresholdPolicy",
    "check_task",
    "classify",
    "detect",
    "false_reject_bound",
    "segment",
]
