"""False-reject-rate thresholds, their guarantee, the recall target and the policy: hand-computed values."""

import math

import numpy as np
import pytest
from scipy.stats import genpareto

from defectlens.errors import ConfigError
from defectlens.post.threshold import (
    FalseRejectThreshold,
    RecallThreshold,
    Threshold,
    ThresholdPolicy,
    false_reject_bound,
)


def _binomial_bound(n: int, below: int, confidence: float = 0.95) -> float:
    """The rate u at which P(at least n - below + 1 of n good scores >= threshold) = 1 - confidence,
    i.e. P(Binomial(n, u) <= n - below) = 1 - confidence, found by bisection (no scipy)."""

    def tail(u: float) -> float:
        return sum(math.comb(n, j) * u**j * (1 - u) ** (n - j) for j in range(n - below + 1))

    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 1 - confidence else (lo, mid)
    return (lo + hi) / 2


def test_bound_above_every_score_is_one_minus_alpha_to_the_one_over_n():
    assert false_reject_bound(np.arange(8.0), 100.0) == pytest.approx(1 - 0.05 ** (1 / 8), abs=1e-12)
    assert false_reject_bound(np.arange(8.0), 100.0) == pytest.approx(0.31234, abs=1e-5)


@pytest.mark.parametrize(("n", "threshold"), [(100, 98.5), (100, 95.5), (40, 30.5)])
def test_bound_matches_the_binomial_tail(n, threshold):
    below = int(np.ceil(threshold))
    expected = _binomial_bound(n, below)
    assert false_reject_bound(np.arange(float(n)), threshold) == pytest.approx(expected, abs=1e-9)


def test_bound_is_one_when_no_score_is_below():
    assert false_reject_bound([1.0, 2.0, 3.0], 0.5) == 1.0


def test_enough_scores_take_the_empirical_quantile():
    scores = np.arange(1000.0)
    t = FalseRejectThreshold(0.01).fit(scores)
    assert t.method_ == "empirical quantile" and t.tail_ is None and t.n_good_ == 1000
    assert t.value_ == pytest.approx(989.01)


def test_labels_select_the_good_scores():
    scores = np.concatenate([np.arange(1000.0), [5000.0, 6000.0]])
    labels = np.r_[np.zeros(1000, int), [1, 1]]
    assert FalseRejectThreshold(0.01).fit(scores, labels).value_ == pytest.approx(989.01)


def test_few_scores_extrapolate_an_exponential_tail(caplog):
    # 20 scores 0..19: n_tail = max(5, ceil(0.2 * 20)) = 5, start = 14, excesses 1..5 (mean 3);
    # P(score > 14) = 5/20, so the tail quantile is 1 - 0.01 * 20 / 5 = 0.96: 14 + 3 * ln(1 / 0.04).
    with caplog.at_level("WARNING"):
        t = FalseRejectThreshold(0.01).fit(np.arange(20.0))
    assert t.method_ == "exponential tail"
    assert t.tail_ == {"start": 14.0, "n_tail": 5, "shape": 0.0, "scale": 3.0}
    assert t.value_ == pytest.approx(14 + 3 * math.log(25))
    assert "20 good scores cannot show a false-reject rate of 0.01" in caplog.text
    assert "needs 200 or more" in caplog.text


def test_more_scores_fit_a_generalized_pareto_tail():
    scores = np.random.default_rng(0).gumbel(size=120)
    t = FalseRejectThreshold(0.01).fit(scores)
    assert t.method_ == "generalized Pareto tail" and t.tail_["n_tail"] == 24
    assert 0.0 <= t.tail_["shape"] <= 0.5
    expected = t.tail_["start"] + genpareto.ppf(1 - 0.01 * 120 / 24, t.tail_["shape"], 0, t.tail_["scale"])
    assert t.value_ == pytest.approx(expected)
    assert t.value_ > np.quantile(scores, 0.95)


def test_five_scores_take_the_maximum_and_say_how_weak_it_is(caplog):
    with caplog.at_level("WARNING"):
        t = FalseRejectThreshold(0.01).fit([1.0, 2.0, 3.0, 4.0, 5.0])
    assert t.method_ == "maximum" and t.value_ == 5.0
    assert "only 5 good scores" in caplog.text and "at most 0.45" in caplog.text


def test_false_reject_threshold_round_trips_with_its_method():
    t = FalseRejectThreshold(0.02).fit(np.arange(20.0))
    back = Threshold.from_dict(t.to_dict())
    assert isinstance(back, FalseRejectThreshold) and back.rate == 0.02
    assert (back.value_, back.method_, back.tail_, back.n_good_) == (t.value_, t.method_, t.tail_, 20)


def test_recall_threshold_is_the_lowest_defect_score_it_must_catch():
    scores = np.array([0.1, 0.2, 0.5, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 1, 1, 1, 1])
    t = RecallThreshold(0.75).fit(scores, labels)  # catch 3 of 4: the 3rd highest defect score
    assert t.value_ == 0.6 and t.n_defective_ == 4
    assert RecallThreshold(1.0).fit(scores, labels).value_ == 0.5


def test_recall_without_defects_says_what_to_give():
    with pytest.raises(ConfigError, match="labelled defective images.*val/<defect type>"):
        RecallThreshold(0.9).fit([0.1, 0.2], [0, 0])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"policy": "best"}, "threshold_policy must be one of"),
        ({"false_reject_rate": 0.0}, "false_reject_rate must be in \\(0, 0.5\\]"),
        ({"false_reject_rate": "1%"}, "false_reject_rate must be a number"),
        ({"recall": 1.5}, "recall must be in \\(0, 1\\]"),
    ],
)
def test_policy_names_the_bad_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        ThresholdPolicy(**settings).check()


def test_policy_pixel_threshold_is_f1_with_masks_else_the_rate():
    policy = ThresholdPolicy(false_reject_rate=0.01)
    assert policy.pixel_threshold(np.arange(1000.0)).value_ == pytest.approx(989.01)
    values, truth = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])
    assert policy.pixel_threshold(np.arange(10.0), (values, truth)).kind == "f1"
    assert ThresholdPolicy("quantile", quantile=0.5).pixel_threshold(np.arange(11.0)).value_ == 5.0
