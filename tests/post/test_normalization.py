import json

import numpy as np
import pytest

from defectlens.errors import ConfigError, NotFittedError
from defectlens.post.normalization import ScoreNormalizer

GOOD = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # std = sqrt(2)


def fitted(spread: str = "std") -> ScoreNormalizer:
    return ScoreNormalizer(spread=spread).fit(threshold=5.5, good_scores=GOOD)


def test_threshold_maps_to_exactly_half():
    n = fitted()
    assert n.transform([5.5])[0] == 0.5
    assert n.transform(np.full((2, 3, 3), 5.5, np.float32)).flat[0] == np.float32(0.5)
    assert n.scale_ == pytest.approx(np.sqrt(2.0))


def test_logistic_values():
    n = fitted()
    out = n.transform([5.5 + np.sqrt(2.0), 5.5 - np.sqrt(2.0)])
    assert out == pytest.approx([1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))])


def test_strictly_monotone_in_open_interval():
    n = fitted()
    raw = np.linspace(-20.0, 30.0, 2001)
    out = n.transform(raw)
    assert np.all(np.diff(out) > 0)
    assert np.all((out > 0) & (out < 1))


def test_decision_matches_raw_threshold_even_after_rounding():
    n = ScoreNormalizer().fit(threshold=1000.0, good_scores=[999.0, 1001.0])
    raw = np.array([np.nextafter(1000.0, 0.0), 1000.0, np.nextafter(1000.0, 2000.0), 999.9999999])
    for arr in (raw, raw.reshape(1, 2, 2), raw.reshape(1, 2, 2).astype(np.float32)):
        out = n.transform(arr)
        np.testing.assert_array_equal((out >= 0.5).ravel(), (arr >= n.threshold_).ravel())


def test_huge_values_do_not_overflow():
    n = fitted()
    with np.errstate(all="raise"):
        out = n.transform([-1e308, 1e308])
    assert out.tolist() == [0.0, 1.0]


def test_shapes_and_dtypes():
    n = fitted()
    s = n.transform(np.arange(4))
    assert s.shape == (4,) and s.dtype == np.float64
    s32 = n.transform(np.arange(4, dtype=np.float32))
    assert s32.shape == (4,) and s32.dtype == np.float64
    m = n.transform(np.random.default_rng(0).normal(size=(2, 8, 6)).astype(np.float32))
    assert m.shape == (2, 8, 6) and m.dtype == np.float32
    assert n.transform(np.zeros((8, 6), np.uint8)).dtype == np.float32
    assert n.transform(np.zeros((2, 8, 6), np.float64)).dtype == np.float64
    assert n.transform(5.5).shape == ()


def test_constant_good_scores_are_finite():
    for t in (3.0, 0.0):
        n = ScoreNormalizer().fit(threshold=t, good_scores=np.full(50, t))
        assert n.scale_ > 0
        out = n.transform(np.array([t - 1.0, t, t + 1e-9, t + 1.0]))
        assert np.all(np.isfinite(out))
        assert out[1] == 0.5 and out[0] < 0.5 < out[2] <= out[3]


def test_iqr_spread():
    n = fitted("iqr")
    assert n.scale_ == pytest.approx(2.0 / 1.349)
    assert n.transform([5.5])[0] == 0.5


def test_not_fitted():
    with pytest.raises(NotFittedError, match="ScoreNormalizer"):
        ScoreNormalizer().transform([1.0])


def test_fit_errors():
    with pytest.raises(ConfigError, match="spread must be one of"):
        ScoreNormalizer(spread="mad").fit(1.0, GOOD)
    with pytest.raises(ConfigError, match="threshold"):
        ScoreNormalizer().fit(float("nan"), GOOD)
    with pytest.raises(ConfigError, match="good_scores"):
        ScoreNormalizer().fit(1.0, [])
    with pytest.raises(ConfigError, match="good_scores"):
        ScoreNormalizer().fit(1.0, [1.0, np.inf])


def test_round_trip():
    n = fitted("iqr")
    d = json.loads(json.dumps(n.to_dict()))
    assert d == {"kind": "logistic", "spread": "iqr", "threshold": 5.5, "scale": n.scale_}
    back = ScoreNormalizer.from_dict(d)
    raw = np.linspace(0, 10, 11)
    np.testing.assert_array_equal(back.transform(raw), n.transform(raw))
    unfitted = ScoreNormalizer.from_dict(ScoreNormalizer().to_dict())
    with pytest.raises(NotFittedError):
        unfitted.transform([1.0])


def test_from_dict_errors():
    with pytest.raises(ConfigError, match="kind"):
        ScoreNormalizer.from_dict({"kind": "minmax", "threshold": 1.0, "scale": 1.0})
    with pytest.raises(ConfigError, match="positive scale"):
        ScoreNormalizer.from_dict({"kind": "logistic", "threshold": 1.0, "scale": 0.0})


def test_inverse_transform():
    n = fitted()
    raw = np.array([0.0, 5.5, 9.0])
    np.testing.assert_allclose(n.inverse_transform(n.transform(raw)), raw)
