"""A clip's log-mel spectrogram above its anomaly score over time (matplotlib, headless Agg canvas)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from defectlens.errors import ConfigError

__all__ = ["save_clip_scores"]

logger = logging.getLogger(__name__)


def save_clip_scores(
    spectrogram: np.ndarray,
    frame_seconds: float,
    window_times: np.ndarray,
    window_scores: np.ndarray,
    threshold: float | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """Write the spectrogram (top) and the per-window anomaly score on the same time axis (bottom).

    Args:
        spectrogram: (n_mels, T) log-mel spectrogram in dB.
        frame_seconds: seconds between frames.
        window_times: (W,) centre of each scored window in seconds.
        window_scores: (W,) anomaly score of each window.
        threshold: drawn as a dashed line when given (clip-score threshold, for orientation).
        path: output PNG; parent folders are created.
        title: figure title.

    Returns:
        The written path.

    Raises:
        ConfigError: the spectrogram is not 2-D or times and scores differ in length.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spec = np.asarray(spectrogram)
    if spec.ndim != 2:
        raise ConfigError(f"spectrogram must be (n_mels, T), got shape {spec.shape}")
    if len(window_times) != len(window_scores):
        raise ConfigError(f"got {len(window_times)} window times but {len(window_scores)} window scores")
    figure = Figure(figsize=(8.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    duration = spec.shape[1] * frame_seconds
    image = top.imshow(
        spec, origin="lower", aspect="auto", extent=(0, duration, 0, spec.shape[0]), cmap="magma"
    )
    figure.colorbar(image, ax=(top, bottom), label="dB", shrink=0.6, anchor=(0.0, 1.0))  # both keep one width
    top.set(ylabel="mel band", title=title or "log-mel spectrogram and anomaly score")
    bottom.plot(window_times, window_scores, color="tab:red", lw=1.2, label="window score")
    if threshold is not None:
        bottom.axhline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.4g}")
    bottom.set(xlabel="time (s)", ylabel="anomaly score", xlim=(0, duration))
    bottom.legend(loc="upper right", fontsize="small")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    logger.debug("wrote clip score figure to %s", out)
    return out
