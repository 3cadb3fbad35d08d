"""Train, test and predict: the jobs the CLI runs, as plain functions."""

from defectlens.engine.predict import PREDICTIONS, predict_images
from defectlens.engine.runs import CHECKPOINT, METRICS, REPORT, DataSpec, RunInfo
from defectlens.engine.test import Scored, evaluate_run, score_records
from defectlens.engine.train import TrainResult, train

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "PREDICTIONS",
    "REPORT",
    "DataSpec",
    "RunInfo",
    "Scored",
    "TrainResult",
    "evaluate_run",
    "predict_images",
    "score_records",
    "train",
]
