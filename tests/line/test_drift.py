"""The drift monitor against hand-computed statistics, its alarm and levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from defectlens.errors import ConfigError
from defectlens.line import DriftLevels, DriftMonitor

GOOD = np.arange(100.0)  # deciles at 9.9, 19.8, ...: ten bins of ten good scores each


def test_statistics_match_hand_computed_values():
    monitor = DriftMonitor(GOOD, threshold=89.5, window=100)
    assert monitor.expected_share == pytest.approx(0.10)  # 90..99 of 0..99
    monitor.update([5.0] * 30)  # all in the lowest bin
    current = monitor.current
    # PSI = sum (a - e) ln(a / e): one bin at 1 against 0.1, nine at the 1e-4 floor against 0.1
    expected_psi = 0.9 * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert current["psi"] == pytest.approx(expected_psi)
    assert current["ks"] == pytest.approx(1 - 6 / 100)  # the good ECDF is 0.06 at 5
    assert current["ks_pvalue"] == pytest.approx(stats.ks_2samp([5.0] * 30, GOOD).pvalue)
    assert current["share_above"] == 0 and current["mean_score"] == 5.0
    assert monitor.alarm and monitor.count == 30


def test_fewer_bins_for_small_samples():
    # 25 good scores: two bins (at least ten per bin) split at the median 12: 0..11 (0.48), 12..24 (0.52)
    monitor = DriftMonitor(np.arange(25.0), threshold=30, window=40)
    monitor.update([1.0] * 30 + [20.0] * 10)
    expected_psi = (0.75 - 0.48) * math.log(0.75 / 0.48) + (0.25 - 0.52) * math.log(0.25 / 0.52)
    assert monitor.current["psi"] == pytest.approx(expected_psi)


def test_alarm_needs_min_count_and_clears_with_hysteresis():
    monitor = DriftMonitor(GOOD, threshold=89.5, window=50, levels=DriftLevels(psi=0.2, min_count=30))
    assert not monitor.update([150.0] * 29)  # far off, but too few to judge
    assert monitor.update([150.0])
    history = monitor.state()["history"]
    assert [point["alarm"] for point in history[-2:]] == [False, True] and history[-1]["count"] == 30
    assert not monitor.update(GOOD[::2])  # the window is now all like the good scores: cleared
    assert monitor.current["psi"] == pytest.approx(0.0)  # five of fifty per bin
    # on the way, PSI fell below its level 0.2 but not below 0.8 * 0.2 with the KS test passing: still raised
    wobble = [p for p in monitor.state()["history"] if 0.16 <= p["psi"] < 0.2 and p["ks_pvalue"] >= 0.001]
    assert wobble and all(point["alarm"] for point in wobble)
    cleared = [p for p in monitor.state()["history"] if p["count"] > 30 and not p["alarm"]]
    assert cleared and all(point["psi"] < 0.16 for point in cleared)
    # the same distribution never raises it
    same = DriftMonitor(GOOD, threshold=89.5, window=50)
    for start in range(0, 100, 2):
        same.update([GOOD[start]])
    assert not same.alarm and same.count == 50


def test_state_is_what_the_service_answers():
    monitor = DriftMonitor(GOOD, threshold=89.5, window=40, history=5)
    monitor.update(GOOD[:12])
    state = monitor.state()
    assert state["count"] == 12 and state["window"] == 40 and state["alarm"] is False
    assert state["levels"] == {"psi": 0.25, "ks_pvalue": 0.001, "min_count": 30}
    assert len(state["history"]) == 5 and [p["count"] for p in state["history"]] == [8, 9, 10, 11, 12]
    assert set(state["current"]) == {"share_above", "expected_share", "psi", "ks", "ks_pvalue", "mean_score"}


def test_bad_levels_are_refused():
    with pytest.raises(ConfigError, match="psi > 0"):
        DriftLevels(psi=0)
    with pytest.raises(ConfigError, match="ks_pvalue"):
        DriftLevels(ks_pvalue=1.5)
    with pytest.raises(ConfigError, match="below its min_count"):
        DriftMonitor(GOOD, 1.0, window=10)
    with pytest.raises(ConfigError, match="at least 2 good"):
        DriftMonitor([1.0], 1.0)
