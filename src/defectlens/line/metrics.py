"""The station's Prometheus metrics (`prometheus-client`): counts, model time, drift, spooled messages.

Each station has its own registry, so several services in one process (as in tests) do not collide.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from defectlens.line.drift import DriftMonitor
from defectlens.post.prediction import Prediction

CONTENT_TYPE = CONTENT_TYPE_LATEST
DRIFT_GAUGES = {
    "share_above": "Share of the drift window at or above the image threshold.",
    "expected_share": "Share of the good calibration scores at or above the threshold.",
    "psi": "Population stability index of the drift window against the good calibration scores.",
    "ks": "Kolmogorov-Smirnov statistic of the drift window against the good calibration scores.",
    "ks_pvalue": "p-value of that Kolmogorov-Smirnov test.",
    "mean_score": "Mean raw image score of the drift window.",
}


class StationMetrics:
    """Counters and gauges of one station, read at scrape time.

    Args:
        drift: its statistics become `defectlens_drift_*` gauges.
        spooled: (sink name, pending-count function) pairs for `defectlens_spool_pending`.
    """

    def __init__(self, drift: DriftMonitor | None = None, spooled: Sequence[tuple[str, object]] = ()) -> None:
        self.registry = CollectorRegistry()
        self.images = Counter(
            "defectlens_images", "Images scored, by label.", ["label"], registry=self.registry
        )
        self.bad_files = Counter(
            "defectlens_bad_files", "Inputs that could not be read or scored.", registry=self.registry
        )
        self.model_seconds = Histogram(
            "defectlens_model_seconds",
            "Model time per image, in seconds.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        if drift is not None:
            Gauge(
                "defectlens_drift_alarm", "1 while the drift alarm is raised.", registry=self.registry
            ).set_function(lambda: float(drift.alarm))
            Gauge(
                "defectlens_drift_window_count", "Scores seen by the drift monitor.", registry=self.registry
            ).set_function(lambda: float(drift.count))
            for key, text in DRIFT_GAUGES.items():
                gauge = Gauge(f"defectlens_drift_{key}", text, registry=self.registry)
                gauge.set_function(lambda key=key: drift.current.get(key, math.nan))
        if spooled:
            pending = Gauge(
                "defectlens_spool_pending",
                "Messages not yet delivered, by sink.",
                ["sink"],
                registry=self.registry,
            )
            for name, count in spooled:
                pending.labels(sink=name).set_function(count)

    def timed(
        self, predict: Callable[[list[np.ndarray]], Prediction]
    ) -> Callable[[list[np.ndarray]], Prediction]:
        """`predict`, recording its time per image in `defectlens_model_seconds`."""

        def timed_predict(images: list[np.ndarray]) -> Prediction:
            start = time.perf_counter()
            prediction = predict(images)
            per_image = (time.perf_counter() - start) / max(1, len(images))
            for _ in images:
                self.model_seconds.observe(per_image)
            return prediction

        return timed_predict

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
