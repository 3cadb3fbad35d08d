"""Whether today's parts still look like the training parts: rolling score statistics against the
calibration's good scores.

Over the last `window` raw image scores it tracks the share above the threshold (against the share of
good calibration scores above it, the calibrated false-reject rate), the population stability index
(PSI, over bins at quantiles of the good scores: ten, or fewer so that every bin expects at least ten
good scores and ten window scores, since PSI on small samples is mostly noise), the two-sample
Kolmogorov-Smirnov statistic and its p-value, and the mean score. The alarm is raised when, with at
least `min_count` scores in the window, PSI reaches `levels.psi` (0.25 is the usual "significant
shift") or the KS p-value falls below `levels.ks_pvalue`; it clears once PSI is below 0.8 of its level
and the KS test passes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from defectlens.errors import ConfigError
from defectlens.post.prediction import Calibration

logger = logging.getLogger(__name__)

PSI_BINS = 10
MIN_PER_BIN = 10
# Empty bins would make PSI infinite; this floor is the usual convention.
PSI_FLOOR = 1e-4
# A raised alarm clears once PSI is below this share of its level (and the KS test passes).
CLEAR_RATIO = 0.8


@dataclass(frozen=True)
class DriftLevels:
    """When the drift alarm is raised.

    Attributes:
        psi: PSI at or above which the scores have shifted (0.1 moderate, 0.25 significant).
        ks_pvalue: KS p-value below which the window differs from the good scores (0 turns it off).
        min_count: fewest scores in the window before any alarm.
    """

    psi: float = 0.25
    ks_pvalue: float = 0.001
    min_count: int = 30

    def __post_init__(self) -> None:
        if self.psi <= 0 or not 0 <= self.ks_pvalue < 1 or self.min_count < 1:
            raise ConfigError(
                f"drift levels need psi > 0, 0 <= ks_pvalue < 1 and min_count >= 1, got psi={self.psi}, "
                f"ks_pvalue={self.ks_pvalue}, min_count={self.min_count}"
            )


class DriftMonitor:
    """Rolling drift statistics of raw image scores; thread-safe.

    Args:
        good_scores: raw scores of the good calibration images (`Calibration.good_scores`).
        threshold: the raw image threshold.
        window: how many of the latest scores are compared.
        levels: when the alarm is raised.
        history: how many past states `state()` returns, one per score.
    """

    def __init__(
        self,
        good_scores: Iterable[float],
        threshold: float,
        window: int = 200,
        levels: DriftLevels = DriftLevels(),
        history: int = 1000,
    ) -> None:
        self.good_scores = np.sort(np.asarray(list(good_scores), dtype=np.float64))
        if self.good_scores.size < 2:
            raise ConfigError(f"drift needs at least 2 good calibration scores, got {self.good_scores.size}")
        if window < levels.min_count:
            raise ConfigError(f"drift window {window} is below its min_count {levels.min_count}")
        self.threshold, self.window, self.levels = float(threshold), window, levels
        n_bins = int(np.clip(min(self.good_scores.size, window) // MIN_PER_BIN, 2, PSI_BINS))
        inner = np.quantile(self.good_scores, np.linspace(0, 1, n_bins + 1)[1:-1])
        self._edges = np.unique(inner)
        self._expected = self._fractions(self.good_scores)
        self.expected_share = float(np.mean(self.good_scores >= self.threshold))
        self._scores: deque[float] = deque(maxlen=window)
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._lock = threading.Lock()
        self.count = 0
        self.current: dict[str, float] = {}
        self.alarm = False

    @classmethod
    def for_calibration(
        cls, calibration: Calibration, window: int = 200, levels: DriftLevels = DriftLevels()
    ) -> DriftMonitor:
        """Drift against a model's good calibration scores and its image threshold."""
        return cls(calibration.good_scores, calibration.image_threshold, window, levels)

    def _fractions(self, scores: np.ndarray) -> np.ndarray:
        counts = np.bincount(
            np.searchsorted(self._edges, scores, side="right"), minlength=self._edges.size + 1
        )
        return np.maximum(counts / scores.size, PSI_FLOOR)

    def update(self, raw_scores: Iterable[float]) -> bool:
        """Add scores; returns the alarm state after them."""
        with self._lock:
            for score in raw_scores:
                self._scores.append(float(score))
                self.count += 1
                self._refresh()
            return self.alarm

    def _refresh(self) -> None:
        window = np.fromiter(self._scores, dtype=np.float64)
        observed = self._fractions(window)
        ks = stats.ks_2samp(window, self.good_scores)
        self.current = {
            "share_above": float(np.mean(window >= self.threshold)),
            "expected_share": self.expected_share,
            "psi": float(np.sum((observed - self._expected) * np.log(observed / self._expected))),
            "ks": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
            "mean_score": float(window.mean()),
        }
        psi, pvalue = self.current["psi"], self.current["ks_pvalue"]
        if self.alarm:  # hysteresis: a raised alarm clears well below its level, not on every wobble
            alarm = psi >= CLEAR_RATIO * self.levels.psi or pvalue < self.levels.ks_pvalue
        else:
            alarm = window.size >= self.levels.min_count and (
                psi >= self.levels.psi or pvalue < self.levels.ks_pvalue
            )
        if alarm != self.alarm:
            log = logger.warning if alarm else logger.info
            log(
                "drift alarm %s after %d images: PSI %.3f, KS p-value %.2g, %.1f%% above the threshold "
                "(calibration %.1f%%)",
                "raised" if alarm else "cleared",
                self.count,
                self.current["psi"],
                self.current["ks_pvalue"],
                100 * self.current["share_above"],
                100 * self.expected_share,
            )
        self.alarm = alarm
        self._history.append({"time": time.time(), "count": self.count, **self.current, "alarm": alarm})

    def state(self) -> dict[str, Any]:
        """What `GET /v1/drift` answers: the current statistics, the levels and the history."""
        with self._lock:
            return {
                "count": self.count,
                "window": self.window,
                "alarm": self.alarm,
                "levels": asdict(self.levels),
                "current": dict(self.current),
                "history": list(self._history),
            }
