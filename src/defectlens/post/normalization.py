"""Map raw anomaly scores to (0, 1) with the operating threshold at exactly 0.5."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from defectlens.errors import ConfigError, NotFittedError

__all__ = ["ScoreNormalizer"]

_REL_FLOOR = 1e-3  # the scale is at least this fraction of |threshold| ...
_ABS_FLOOR = 1e-12  # ... and at least this, so a constant good set never divides by zero
_BELOW_HALF = {
    np.dtype(np.float32): np.nextafter(np.float32(0.5), np.float32(0.0)),
    np.dtype(np.float64): np.nextafter(0.5, 0.0),
}


class ScoreNormalizer:
    """Monotone map raw -> (0, 1) with the operating threshold at exactly 0.5, so users read scores without
    knowing the model.

    ``normalized = expit((raw - threshold_) / scale_)`` (a logistic, computed with scipy's overflow-safe
    ``expit``). ``scale_`` is the spread of the good scores: their standard deviation (``spread="std"``) or
    the robust ``IQR / 1.349`` (``spread="iqr"``, equal to the std for a normal distribution), floored at
    ``max(1e-3 * |threshold|, 1e-12)``. One scale unit above the threshold reads 0.73, two read 0.88.

    The decision is preserved exactly: ``transform(raw) >= 0.5`` if and only if ``raw >= threshold_``,
    also after rounding to float32. Far from the threshold the output saturates to 0.0 or 1.0 in floating
    point (no clipping is applied, the map is strictly increasing before rounding).

    Args:
        spread: How ``scale_`` is measured on the good scores: "std" or "iqr".

    Attributes:
        threshold_: The raw threshold, mapped to 0.5.
        scale_: The raw-score distance that moves the output by one logistic unit.
    """

    kind: ClassVar[str] = "logistic"
    SPREADS: ClassVar[tuple[str, ...]] = ("std", "iqr")

    def __init__(self, spread: str = "std") -> None:
        self.spread = spread

    def fit(self, threshold: float, good_scores: ArrayLike) -> Self:
        """Set ``threshold_`` and ``scale_``.

        Args:
            threshold: The raw operating threshold (e.g. ``Threshold.value_``).
            good_scores: Raw scores of good samples (any shape, flattened), used only for their spread.

        Returns:
            self.

        Raises:
            ConfigError: If spread is unknown, threshold is not finite, or good_scores is empty or not finite.
        """
        if self.spread not in self.SPREADS:
            raise ConfigError(
                f"ScoreNormalizer spread must be one of {list(self.SPREADS)}, got {self.spread!r}"
            )
        try:
            t = float(threshold)
        except (TypeError, ValueError):
            raise ConfigError(
                f"ScoreNormalizer threshold must be a finite number, got {threshold!r}"
            ) from None
        if not math.isfinite(t):
            raise ConfigError(f"ScoreNormalizer threshold must be a finite number, got {threshold!r}")
        good = np.asarray(good_scores, dtype=np.float64).ravel()
        if good.size == 0:
            raise ConfigError("ScoreNormalizer good_scores must contain at least one value, got none")
        if not np.all(np.isfinite(good)):
            raise ConfigError("ScoreNormalizer good_scores must be finite, got NaN/inf values")
        if self.spread == "std":
            spread = float(np.std(good))
        else:
            q75, q25 = np.quantile(good, [0.75, 0.25])
            spread = float(q75 - q25) / 1.349
        self.threshold_ = t
        self.scale_ = max(spread, _REL_FLOOR * abs(t), _ABS_FLOOR)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call fit(threshold, good_scores) first"
            )

    def transform(self, raw: ArrayLike | np.ndarray) -> np.ndarray:
        """Normalise raw scores or maps elementwise.

        Args:
            raw: Raw scores of any shape, e.g. (B,) image scores or (B, H, W) maps.

        Returns:
            An array of the same shape in [0, 1]: float64 for scalars and 1-D scores; for 2-D and higher
            (maps) float32, except that a float64 input map stays float64.

        Raises:
            NotFittedError: If ``fit`` has not been called.
        """
        self._check_fitted()
        arr = np.asarray(raw)
        keep64 = arr.ndim <= 1 or arr.dtype == np.float64
        out_dtype = np.dtype(np.float64) if keep64 else np.dtype(np.float32)
        x = arr.astype(np.float64, copy=False)
        out = expit((x - self.threshold_) / self.scale_).astype(out_dtype, copy=False)
        # Rounding (tiny |z| in float64, or the cast to float32) can lift a below-threshold value to 0.5;
        # push it back just below so the 0.5 decision equals the raw-threshold decision.
        lifted = (x < self.threshold_) & (out >= 0.5)
        if np.any(lifted):
            out = np.where(lifted, _BELOW_HALF[out_dtype], out).astype(out_dtype, copy=False)
        return np.asarray(out)

    def inverse_transform(self, normalized: ArrayLike) -> np.ndarray:
        """Map normalised values in (0, 1) back to raw scores (float64); 0 and 1 map to -inf and inf."""
        self._check_fitted()
        p = np.asarray(normalized, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return self.threshold_ + self.scale_ * (np.log(p) - np.log1p(-p))

    def to_dict(self) -> dict[str, Any]:
        """Serialise as ``{"kind": "logistic", "spread": ..., "threshold": ..., "scale": ...}``.

        ``threshold`` and ``scale`` are None when not fitted.
        """
        fitted = hasattr(self, "scale_")
        return {
            "kind": self.kind,
            "spread": self.spread,
            "threshold": float(self.threshold_) if fitted else None,
            "scale": float(self.scale_) if fitted else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreNormalizer:
        """Rebuild a normaliser (fitted when threshold and scale are given) from ``to_dict`` output.

        Raises:
            ConfigError: On another kind, an unknown spread or a non-finite / non-positive fitted state.
        """
        if not isinstance(d, dict) or d.get("kind", cls.kind) != cls.kind:
            got = d.get("kind") if isinstance(d, dict) else d
            raise ConfigError(f"ScoreNormalizer kind must be one of {[cls.kind]}, got {got!r}")
        obj = cls(spread=d.get("spread", "std"))
        if obj.spread not in cls.SPREADS:
            raise ConfigError(
                f"ScoreNormalizer spread must be one of {list(cls.SPREADS)}, got {obj.spread!r}"
            )
        threshold, scale = d.get("threshold"), d.get("scale")
        if threshold is None and scale is None:
            return obj
        try:
            t, s = float(threshold), float(scale)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"ScoreNormalizer threshold and scale must both be numbers, got {threshold!r} and {scale!r}"
            ) from None
        if not (math.isfinite(t) and math.isfinite(s) and s > 0):
            raise ConfigError(
                f"ScoreNormalizer needs a finite threshold and a finite positive scale, got {t!r} and {s!r}"
            )
        obj.threshold_, obj.scale_ = t, s
        return obj

    def __repr__(self) -> str:
        fitted = (
            f", threshold_={self.threshold_!r}, scale_={self.scale_!r}" if hasattr(self, "scale_") else ""
        )
        return f"{type(self).__name__}(spread={self.spread!r}){fitted}"
