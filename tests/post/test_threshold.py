import json

import numpy as np
import pytest

from defectlens.errors import ConfigError, NotFittedError
from defectlens.post.threshold import (
    F1Threshold,
    FixedThreshold,
    QuantileThreshold,
    Threshold,
)

# Hand-computed: t=0.3 flags {0.3, 0.4, 0.5, 0.6}: tp=3, fp=1, fn=0 -> F1 = 6/7, the best of all cuts
# (t=0.1: 6/9, 0.2: 6/8, 0.4: 4/6, 0.5: 4/5, 0.6: 2/4).
SCORES = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
LABELS = np.array([0, 0, 1, 0, 1, 1])


def test_fixed_threshold():
    t = FixedThreshold(0.7)
    assert not t.is_fitted
    assert t.fit().value_ == 0.7
    assert FixedThreshold(2).fit(np.zeros(3)).value_ == 2.0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "abc"])
def test_fixed_threshold_rejects_non_finite(value):
    with pytest.raises(ConfigError, match="value"):
        FixedThreshold(value).fit()


def test_quantile_on_hand_values():
    assert QuantileThreshold(q=0.99).fit(np.arange(101)).value_ == 99.0
    assert QuantileThreshold(q=1.0).fit(np.arange(101)).value_ == 100.0
    assert QuantileThreshold(q=0.5).fit([[1.0, 2.0], [3.0, 4.0]]).value_ == 2.5


def test_quantile_uses_only_good_scores_when_labels_given():
    scores = np.concatenate([np.arange(101.0), [1000.0, 2000.0]])
    labels = np.r_[np.zeros(101, int), [1, 1]]
    assert QuantileThreshold(q=0.99).fit(scores, labels).value_ == 99.0
    assert QuantileThreshold(q=0.99).fit(scores).value_ > 99.0


@pytest.mark.parametrize("q", [0, -0.1, 1.01, float("nan"), True, "0.9"])
def test_quantile_bad_q(q):
    t = QuantileThreshold(q=q)  # the constructor only stores
    with pytest.raises(ConfigError, match=r"q must be a number in \(0, 1\]"):
        t.fit(np.arange(10))


def test_quantile_errors_on_bad_data():
    with pytest.raises(ConfigError, match="empty"):
        QuantileThreshold().fit([])
    with pytest.raises(ConfigError, match="finite"):
        QuantileThreshold().fit([0.0, np.nan])
    with pytest.raises(ConfigError, match="good samples"):
        QuantileThreshold().fit([1.0, 2.0], [1, 1])
    with pytest.raises(ConfigError, match="one entry per score"):
        QuantileThreshold().fit([1.0, 2.0], [0])


def test_f1_picks_hand_computed_threshold():
    t = F1Threshold().fit(SCORES, LABELS)
    assert t.value_ == pytest.approx(0.3)
    assert t.f1_ == pytest.approx(6 / 7)


def test_f1_perfect_separation():
    t = F1Threshold().fit([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert t.value_ == pytest.approx(0.8)
    assert t.f1_ == pytest.approx(1.0)


@pytest.mark.parametrize("labels", [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], None])
def test_f1_needs_both_classes(labels):
    with pytest.raises(ConfigError, match="both good"):
        F1Threshold().fit(SCORES, labels)


def test_f1_rejects_non_binary_labels():
    with pytest.raises(ConfigError, match="0 \\(good\\) or 1"):
        F1Threshold().fit(SCORES, [0, 1, 2, 0, 1, 1])


@pytest.mark.parametrize(
    "threshold",
    [FixedThreshold(1.5).fit(), QuantileThreshold(0.9).fit(np.arange(11)), F1Threshold().fit(SCORES, LABELS)],
)
def test_dict_round_trip(threshold):
    d = json.loads(json.dumps(threshold.to_dict()))
    assert d["kind"] == threshold.kind
    back = Threshold.from_dict(d)
    assert type(back) is type(threshold)
    assert back.get_params() == threshold.get_params()
    assert back.value_ == threshold.value_
    assert back.to_dict() == d


def test_dict_shapes():
    assert QuantileThreshold(0.9).fit(np.arange(11)).to_dict() == {"kind": "quantile", "q": 0.9, "value": 9.0}
    assert F1Threshold().to_dict() == {"kind": "f1", "value": None}
    unfitted = Threshold.from_dict({"kind": "quantile", "q": 0.95, "value": None})
    assert not unfitted.is_fitted and unfitted.q == 0.95


def test_from_dict_errors():
    with pytest.raises(
        ConfigError,
        match=r"kind must be one of \['f1', 'false_reject_rate', 'fixed', 'quantile', 'recall'\], got 'otsu'",
    ):
        Threshold.from_dict({"kind": "otsu", "value": 1.0})
    with pytest.raises(ConfigError, match="'kind'"):
        Threshold.from_dict({"value": 1.0})
    with pytest.raises(ConfigError, match="unknown"):
        Threshold.from_dict({"kind": "quantile", "quantile": 0.9, "value": 1.0})


def test_check_fitted():
    with pytest.raises(NotFittedError, match="QuantileThreshold"):
        QuantileThreshold().check_fitted()
    assert FixedThreshold(3.0).fit().check_fitted() == 3.0
