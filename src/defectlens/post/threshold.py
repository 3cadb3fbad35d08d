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
    "F1Threshold",
    "FixedThreshold",
    "QuantileThreshold",
    "Threshold",
    "adaptive_threshold",
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
        params = {k: v for k, v in d.items() if k not in ("kind", "value")}
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


def adaptive_threshold(scores: ArrayLike, labels: ArrayLike | None = None, q: float = 0.99) -> Threshold:
    """Fit the best threshold the data allows.

    Args:
        scores: Raw anomaly scores.
        labels: Optional 0/1 labels, one per score.
        q: Quantile used when no labelled anomalies and normals are both available.

    Returns:
        A fitted F1Threshold when labels contain both 0 and 1, else a QuantileThreshold(q) fitted on
        all the scores.
    """
    if labels is not None:
        arr = _as_scores(scores)
        lab = _as_labels(labels, arr.size)
        if 0 < int(lab.sum()) < lab.size:
            return F1Threshold().fit(arr, lab)
        if lab.size and lab.all():
            logger.warning(
                "adaptive_threshold: every label is anomalous; taking the %s quantile of anomalous scores", q
            )
        return QuantileThreshold(q=q).fit(arr)
    return QuantileThreshold(q=q).fit(scores)
