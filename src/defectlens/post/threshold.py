"""Operating thresholds on raw anomaly scores (higher score = more anomalous).

A sample is called anomalous when ``score >= value_``. Every strategy shares one small interface:
``fit(scores, labels=None)`` sets ``value_`` and returns ``self``; ``to_dict`` / ``Threshold.from_dict``
round-trip the strategy, its parameters and the fitted value through plain JSON-able dicts.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike

from defectlens.errors import ConfigError, NotFittedError

__all__ = [
    "POLICIES",
    "F1Threshold",
    "FalseRejectThreshold",
    "FixedThreshold",
    "QuantileThreshold",
    "RecallThreshold",
    "Threshold",
    "ThresholdPolicy",
    "describe_operating_point",
    "false_reject_bound",
]

logger = logging.getLogger(__name__)


def _as_scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """Flatten scores to a finite, non-empty float64 vector."""
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ConfigError(f"{name} must contain at least one value, got an empty array")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ConfigError(f"{name} must be finite, got {bad} NaN/inf value(s) out of {arr.size}")
    return arr


def _as_labels(labels: ArrayLike, n: int) -> np.ndarray:
    """Flatten labels to an int vector of 0 (good) / 1 (anomalous) matching ``n`` scores."""
    arr = np.asarray(labels).ravel()
    if arr.size != n:
        raise ConfigError(f"labels must have one entry per score ({n}), got {arr.size}")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise ConfigError(f"labels must be 0 (good) or 1 (anomalous), got values {sorted(values)}")
    return arr.astype(np.int64)


class Threshold:
    """Base class of the threshold strategies.

    Subclasses set ``kind`` (the name used by ``to_dict``/``from_dict``), list their constructor
    arguments in ``_params`` and implement ``fit``.

    Attributes:
        value_: The fitted threshold on raw scores; ``score >= value_`` is anomalous.
    """

    kind: ClassVar[str] = ""
    _params: ClassVar[tuple[str, ...]] = ()
    # Fitted attributes besides value_ that to_dict/from_dict carry (their names without the "_").
    _fitted: ClassVar[tuple[str, ...]] = ()
    _registry: ClassVar[dict[str, type[Threshold]]] = {}

    value_: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Threshold._registry[cls.kind] = cls

    def fit(self, scores: ArrayLike, labels: ArrayLike | None = None) -> Self:
        """Choose the threshold from scores (and labels where the strategy uses them).

        Args:
            scores: Raw anomaly scores, any shape (flattened).
            labels: Optional 0 (good) / 1 (anomalous) labels, one per score.

        Returns:
            self, with ``value_`` set.
        """
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        """Whether ``value_`` has been set."""
        return hasattr(self, "value_")

    def check_fitted(self) -> float:
        """Return ``value_``, raising NotFittedError when ``fit`` has not been called."""
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(scores, labels) first")
        return self.value_

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments of this strategy."""
        return {name: getattr(self, name) for name in self._params}

    def to_dict(self) -> dict[str, Any]:
        """Serialise as ``{"kind": ..., <params>..., "value": float | None}`` (None when not fitted)."""
        out: dict[str, Any] = {"kind": self.kind}
        for name, val in self.get_params().items():
            out[name] = float(val) if isinstance(val, (float, np.floating)) else val
        if self.is_fitted:
            out["value"] = float(self.value_)
            for name in self._fitted:
                out[name] = getattr(self, f"{name}_", None)
        else:
            out.setdefault("value", None)  # FixedThreshold's parameter is its value
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Threshold:
        """Rebuild a strategy (fitted when ``d["value"]`` is not None) from ``to_dict`` output.

        Raises:
            ConfigError: When the kind is unknown or the parameters do not fit the kind.
        """
        if not isinstance(d, dict) or "kind" not in d:
            raise ConfigError(f"threshold dict must have a 'kind' key, got {d!r}")
        kind = d["kind"]
        cls = Threshold._registry.get(kind)
        if cls is None:
            raise ConfigError(f"threshold kind must be one of {sorted(Threshold._registry)}, got {kind!r}")
        params = {k: v for k, v in d.items() if k not in ("kind", "value", *cls._fitted)}
        if "value" in cls._params:
            params["value"] = d.get("value")
        unknown = sorted(set(params) - set(cls._params))
        if unknown:
            raise ConfigError(
                f"threshold kind {kind!r} takes parameters {list(cls._params)}, got unknown {unknown}"
            )
        obj = cls(**params)
        value = d.get("value")
        if value is not None:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"threshold value must be finite, got {value!r}")
            obj.value_ = value
            for name in cls._fitted:
                setattr(obj, f"{name}_", d.get(name))
        return obj

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        fitted = f", value_={self.value_!r}" if self.is_fitted else ""
        return f"{type(self).__name__}({params}){fitted}"


class FixedThreshold(Threshold):
    """A user-set threshold; ``fit`` ignores the data and copies ``value`` into ``value_``.

    Args:
        value: The threshold on raw scores.
    """

    kind = "fixed"
    _params = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value

    def fit(self, scores: ArrayLike | None = None, labels: ArrayLike | None = None) -> Self:
        """Set ``value_ = value`` (scores and labels are accepted for interface symmetry and ignored)."""
        try:
            value = float(self.value)
        except (TypeError, ValueError):
            raise ConfigError(f"FixedThreshold value must be a finite number, got {self.value!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"FixedThreshold value must be a finite number, got {self.value!r}")
        self.value_ = value
        return self


class QuantileThreshold(Threshold):
    """The ``q`` quantile of the good scores (numpy's default linear interpolation).

    When labels are given only the scores labelled 0 are used; otherwise all scores are taken as good.

    Args:
        q: Quantile in (0, 1]; 0.99 flags about 1 % of good samples as anomalous.
    """

    kind = "quantile"
    _params = ("q",)

    def __init__(self, q: float = 0.99) -> None:
        self.q = q

    def fit(self, scores: ArrayLike, labels: ArrayLike | None = None) -> Self:
        """Set ``value_`` to the ``q`` quantile of the (good) scores.

        Raises:
            ConfigError: If q is outside (0, 1], scores are empty/non-finite, or labels hold no good sample.
        """
        q = self.q
        if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)) or not 0 < q <= 1:
            raise ConfigError(f"QuantileThreshold q must be a number in (0, 1], got {q!r}")
        arr = _as_scores(scores)
        if labels is not None:
            lab = _as_labels(labels, arr.size)
            arr = arr[lab == 0]
            if arr.size == 0:
                raise ConfigError(
                    "QuantileThreshold needs good samples (label 0) when labels are given, got none"
                )
        self.value_ = float(np.quantile(arr, float(q)))
        return self


class F1Threshold(Threshold):
    """The threshold maximising F1 (``score >= t`` anomalous) on labelled scores.

    Candidates are the distinct scores (``sklearn.metrics.precision_recall_curve``); among equal best F1
    the lowest threshold is kept.

    Attributes:
        value_: The chosen threshold.
        f1_: The F1 score reached at ``value_``.
    """

    kind = "f1"
    _params = ()
    _fitted = ("f1",)

    def __init__(self) -> None:
        pass

    def fit(self, scores: ArrayLike, labels: ArrayLike | None = None) -> Self:
        """Set ``value_`` to the F1-optimal threshold.

        Raises:
            ConfigError: If labels are missing or do not contain both good (0) and anomalous (1) samples.
        """
        from sklearn.metrics import precision_recall_curve

        arr = _as_scores(scores)
        if labels is None:
            raise ConfigError(
                "F1Threshold needs labels with both good (0) and anomalous (1) samples, got None"
            )
        lab = _as_labels(labels, arr.size)
        n_bad = int(lab.sum())
        if n_bad == 0 or n_bad == lab.size:
            raise ConfigError(
                "F1Threshold needs labels with both good (0) and anomalous (1) samples, "
                f"got {lab.size - n_bad} good and {n_bad} anomalous"
            )
        precision, recall, thresholds = precision_recall_curve(lab, arr)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        best = int(np.argmax(f1))  # thresholds are increasing: first max = lowest threshold
        self.value_ = float(thresholds[best])
        self.f1_ = float(f1[best])
        return self


CONFIDENCE = 0.95
# The empirical quantile resolves a false-reject rate only when at least this many good scores are
# expected above it; with fewer, the upper tail is extrapolated.
MIN_EXCEEDANCES = 2.0
MIN_TAIL = 5  # fewest top scores a tail model is fitted to; with fewer good scores, their maximum
PARETO_TAIL = 10  # a generalised Pareto tail needs this many; an exponential tail (shape 0) below
# The Pareto shape is clipped to [0, 0.5]: the tail is taken as no lighter than exponential (allowing
# bounded tails, a dozen tail points gave mean rates of 1.3-2.1 % for 1 % asked on normal, Gumbel and
# log-normal scores, exploratory), and no heavier than a dozen points can support.
SHAPE_RANGE = (0.0, 0.5)


def false_reject_bound(good_scores: ArrayLike, threshold: float, confidence: float = CONFIDENCE) -> float:
    """The false-reject rate a threshold guarantees at `confidence`, from N good scores, for any
    continuous score distribution.

    With k of the N good scores below the threshold, the true rate P(good score >= threshold) is at most
    1 - F(x_(k)), the mass above the k-th smallest score, which follows Beta(N - k + 1, k) (order
    statistics of a uniform sample). The bound is that distribution's `confidence` quantile.

    Returns:
        The upper bound in (0, 1]; 1.0 when no good score lies below the threshold.
    """
    from scipy.stats import beta

    good = _as_scores(good_scores, "good_scores")
    below = int(np.count_nonzero(good < threshold))
    if below == 0:
        return 1.0
    return float(beta.ppf(confidence, good.size - below + 1, below))


class FalseRejectThreshold(Threshold):
    """The threshold that rejects a share `rate` of good parts: the (1 - rate) quantile of the good scores.

    When fewer than `MIN_EXCEEDANCES` good scores are expected above it (N * rate < 2: e.g. fewer than 200
    good images at 1 %), the empirical quantile would be one of the few largest scores, so the upper tail
    is extrapolated instead: peaks over the (n_tail + 1)-th largest score, with n_tail = max(5, 20 % of N),
    modelled by a generalised Pareto distribution (scipy.stats.genpareto, maximum likelihood, shape
    clipped to [0, 0.5]), or by an exponential one when n_tail < 10. With 5 or fewer good scores, nothing can
    be fitted and the threshold is their maximum; a warning says so.

    Args:
        rate: the false-reject rate in (0, 0.5].

    Attributes:
        method_: "empirical quantile", "generalized Pareto tail", "exponential tail" or "maximum".
        n_good_: how many good scores the threshold was fitted on.
        tail_: the tail model {"start", "n_tail", "shape", "scale"}, or None for the empirical quantile.
    """

    kind = "false_reject_rate"
    _params = ("rate",)
    _fitted = ("method", "n_good", "tail")

    def __init__(self, rate: float = 0.01) -> None:
        self.rate = rate

    def fit(self, scores: ArrayLike, labels: ArrayLike | None = None) -> Self:
        """Set ``value_`` from the good scores (those labelled 0 when labels are given).

        Raises:
            ConfigError: rate outside (0, 0.5], scores empty or not finite, or no good score.
        """
        rate = _check_rate(self.rate, "false_reject_rate")
        good = _good_scores(scores, labels)
        n = good.size
        self.n_good_, self.tail_ = n, None
        if n * rate >= MIN_EXCEEDANCES:
            self.value_, self.method_ = float(np.quantile(good, 1.0 - rate)), "empirical quantile"
            return self
        if n <= MIN_TAIL:
            self.value_, self.method_ = float(good.max()), "maximum"
            logger.warning(
                "only %d good scores: too few to model the upper tail, so the threshold is their maximum; "
                "its false-reject rate is known only to be at most %.2f (95%% confidence)",
                n,
                false_reject_bound(good, np.nextafter(good.max(), np.inf)),
            )
            return self
        self.value_, self.tail_, self.method_ = _tail_quantile(good, rate)
        logger.warning(
            "%d good scores cannot show a false-reject rate of %g (the empirical quantile needs %d or more): "
            "the threshold is extrapolated from the top %d scores (%s)",
            n,
            rate,
            math.ceil(MIN_EXCEEDANCES / rate),
            self.tail_["n_tail"],
            self.method_,
        )
        return self


def _tail_quantile(good: np.ndarray, rate: float) -> tuple[float, dict[str, float], str]:
    """(threshold, tail model, method) of a peaks-over-threshold fit to the largest good scores."""
    from scipy.stats import genpareto

    n = good.size
    ordered = np.sort(good)
    n_tail = min(n - 1, max(MIN_TAIL, math.ceil(0.2 * n)))
    start = float(ordered[n - n_tail - 1])
    excess = ordered[n - n_tail :] - start
    if n_tail >= PARETO_TAIL and excess.max() > 0:
        shape, _, scale = genpareto.fit(excess, floc=0)
        if not SHAPE_RANGE[0] <= shape <= SHAPE_RANGE[1]:
            shape = float(np.clip(shape, *SHAPE_RANGE))
            _, _, scale = genpareto.fit(excess, fc=shape, floc=0)
        method = "generalized Pareto tail"
    else:
        shape, scale, method = 0.0, float(excess.mean()), "exponential tail"
    # P(score > start) is n_tail / n; the rate asked for is the tail's own 1 - rate * n / n_tail quantile.
    exceed = rate * n / n_tail
    value = start + (float(genpareto.ppf(1.0 - exceed, shape, loc=0, scale=scale)) if scale > 0 else 0.0)
    tail = {"start": start, "n_tail": n_tail, "shape": float(shape), "scale": float(scale)}
    return value, tail, method


class RecallThreshold(Threshold):
    """The highest threshold that still catches a share `recall` of the labelled defective images.

    Args:
        recall: the share of defective parts to reject, in (0, 1].

    Attributes:
        n_defective_: how many labelled defective scores it was fitted on.
    """

    kind = "recall"
    _params = ("recall",)
    _fitted = ("n_defective",)

    def __init__(self, recall: float = 0.95) -> None:
        self.recall = recall

    def fit(self, scores: ArrayLike, labels: ArrayLike | None = None) -> Self:
        """Set ``value_`` to the ceil(recall * n)-th largest defective score.

        Raises:
            ConfigError: recall outside (0, 1], or no labelled defective image.
        """
        recall = _check_rate(self.recall, "recall", upper=1.0)
        arr = _as_scores(scores)
        lab = None if labels is None else _as_labels(labels, arr.size)
        if lab is None or not lab.any():
            raise ConfigError(
                "a recall target needs labelled defective images among the calibration images "
                "(for example DIR/val/<defect type>/ next to DIR/val/good/); none were given"
            )
        defective = np.sort(arr[lab == 1])[::-1]
        self.value_ = float(defective[math.ceil(recall * defective.size) - 1])
        self.n_defective_ = int(defective.size)
        return self


def _check_rate(value: object, name: str, upper: float = 0.5) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number in (0, {upper:g}], got {value!r}")
    if not 0 < float(value) <= upper:
        raise ConfigError(f"{name} must be in (0, {upper:g}], got {value!r}")
    return float(value)


def _good_scores(scores: ArrayLike, labels: ArrayLike | None) -> np.ndarray:
    arr = _as_scores(scores)
    if labels is not None:
        arr = arr[_as_labels(labels, arr.size) == 0]
    if arr.size == 0:
        raise ConfigError("a false-reject threshold needs good scores (label 0), got none")
    return arr


def describe_operating_point(threshold: Threshold, good_scores: ArrayLike, source: str) -> dict[str, Any]:
    """The operating point of a fitted threshold as a quality engineer reads it (metrics.json, the printed
    summary, the service): the policy and its target, the threshold and how it was found (`method`, and
    the fitted `tail` when one was extrapolated), where the good calibration scores come from and how many
    there are, the share of them it rejects and the false-reject rate it guarantees at 95 % confidence
    (`false_reject_bound`; both None without good scores, e.g. an old checkpoint that kept none)."""
    good = np.asarray(good_scores, dtype=np.float64)
    value = threshold.check_fitted()
    described = threshold.to_dict()
    point: dict[str, Any] = {
        "policy": described.pop("kind"),
        **{k: v for k, v in described.items() if k not in ("value", "method", "n_good", "tail")},
        "threshold": float(value),
        "method": getattr(threshold, "method_", None) or threshold.kind,
        "scores_from": source,
        "n_good": int(good.size),
        "calibration_false_reject_rate": float(np.mean(good >= value)) if good.size else None,
        "guaranteed_false_reject_rate": false_reject_bound(good, value) if good.size else None,
        "confidence": CONFIDENCE,
    }
    if getattr(threshold, "tail_", None):
        point["tail"] = threshold.tail_
    return point


POLICIES: tuple[str, ...] = ("false_reject_rate", "recall", "quantile", "f1")


class ThresholdPolicy:
    """How a detector chooses its image and pixel thresholds: the operating point a line states.

    Args:
        policy: "false_reject_rate" (reject at most that share of good parts; the default), "recall"
            (catch that share of the labelled defective calibration images), "quantile" (the quantile of
            the good scores, without tail extrapolation) or "f1" (F1-optimal on labelled calibration images).
        false_reject_rate, recall, quantile: the target of each policy.

    The pixel threshold is F1-optimal when the calibration images carry defect masks; otherwise it is
    the same rule applied to each good image's map maximum (the quantile for "quantile", the
    false-reject rate for the others), so that about that share of good images shows any region.
    """

    def __init__(
        self,
        policy: str = "false_reject_rate",
        false_reject_rate: float = 0.01,
        recall: float = 0.95,
        quantile: float = 0.99,
    ) -> None:
        self.policy = policy
        self.false_reject_rate = false_reject_rate
        self.recall = recall
        self.quantile = quantile

    def check(self) -> None:
        """Raise ConfigError naming the setting that is out of range."""
        if self.policy not in POLICIES:
            raise ConfigError(f"threshold_policy must be one of {list(POLICIES)}, got {self.policy!r}")
        _check_rate(self.false_reject_rate, "false_reject_rate")
        _check_rate(self.recall, "recall", upper=1.0)
        _check_rate(self.quantile, "threshold_quantile", upper=1.0)

    def image_threshold(self, scores: ArrayLike, labels: ArrayLike) -> Threshold:
        """The fitted image threshold for calibration scores with labels 0 (good) / 1 (defective)."""
        self.check()
        strategies: dict[str, Threshold] = {
            "false_reject_rate": FalseRejectThreshold(self.false_reject_rate),
            "recall": RecallThreshold(self.recall),
            "quantile": QuantileThreshold(self.quantile),
            "f1": F1Threshold(),
        }
        return strategies[self.policy].fit(scores, labels)

    def pixel_threshold(
        self, good_maxima: ArrayLike, pixels: tuple[np.ndarray, np.ndarray] | None = None
    ) -> Threshold:
        """The fitted pixel threshold: F1-optimal on `pixels` = (map values, 0/1 mask values) when they hold
        defective pixels, else from the good images' map maxima."""
        self.check()
        if pixels is not None and np.asarray(pixels[1]).any():
            return F1Threshold().fit(pixels[0], np.asarray(pixels[1]).astype(int))
        if self.policy == "quantile":
            return QuantileThreshold(self.quantile).fit(good_maxima)
        return FalseRejectThreshold(self.false_reject_rate).fit(good_maxima)
