"""The one interface of machine-sound detectors: fit on normal clips, score clips, save/load one file.

A detector turns each clip into a log-mel spectrogram (its own `feature_settings`), cuts it into
windows of `window_frames` frames every `window_hop` frames, scores every window and combines the
window scores into one clip score. A subclass stores its keyword hyper-parameters in `__init__` and
implements `_fit_features` (build and train a torch module on training spectrograms),
`_build_module` (rebuild it for a saved state) and `_score_windows` (every detection score of one
clip). Thresholds, checkpoints, devices and feature loading live here once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from defectlens.audio.features import FeatureCache, LogMelSettings, iter_features, load_features
from defectlens.core.checkpoint import restore_weights, warn_refit, write_checkpoint
from defectlens.core.context import FitContext, resolve_device
from defectlens.core.estimator import Estimator, setting
from defectlens.core.settings import POSITIVE_INT, Integer, Optional, Real
from defectlens.data.datasets import carve
from defectlens.errors import ConfigError
from defectlens.post.threshold import FixedThreshold, Threshold, describe_operating_point

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "audio_detector"


@dataclass(frozen=True)
class AudioScores:
    """Scores of a batch of clips; higher = more anomalous.

    Attributes:
        clip_scores: (N,) the detector's selected score per clip.
        frame_scores: N arrays (W_i,): the selected score of each window of clip i, in time order.
        all_scores: every detection score the detector computes, name -> (N,).
        window_frames: frames per window.
        window_hop: frames between the starts of consecutive windows.
        frame_seconds: seconds between consecutive frames.
    """

    clip_scores: np.ndarray
    frame_scores: list[np.ndarray]
    all_scores: dict[str, np.ndarray]
    window_frames: int
    window_hop: int
    frame_seconds: float

    def window_times(self, index: int) -> np.ndarray:
        """(W_i,) centre of each window of clip `index`, in seconds from the clip's start."""
        starts = np.arange(len(self.frame_scores[index])) * self.window_hop
        return (starts + self.window_frames / 2) * self.frame_seconds


def clip_windows(spectrogram: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(n_mels, T) -> (W, n_mels, window) views of the windows starting every `hop` frames."""
    return sliding_window_view(spectrogram, window, axis=1)[:, ::hop].transpose(1, 0, 2)


class WindowSampler:
    """Every (clip, start frame) window of a list of spectrograms, gathered into batches on demand, so
    training never materialises the overlapping windows (thousands of clips fit in memory as spectrograms).

    Args:
        spectrograms: (n_mels, T_i) arrays.
        window: frames per window.
        hop: frames between window starts.
    """

    def __init__(self, spectrograms: Sequence[np.ndarray], window: int, hop: int) -> None:
        self.spectrograms = spectrograms
        self.window = window
        starts = [np.arange(0, s.shape[1] - window + 1, hop) for s in spectrograms]
        self.clip = np.concatenate([np.full(len(x), i) for i, x in enumerate(starts)])
        self.start = np.concatenate(starts)

    def __len__(self) -> int:
        return len(self.start)

    def gather(self, index: torch.Tensor) -> np.ndarray:
        """(B,) window indices -> (B, n_mels, window) float32 array."""
        return np.stack(
            [
                self.spectrograms[c][:, s : s + self.window]
                for c, s in zip(self.clip[index], self.start[index], strict=True)
            ]
        )


class AudioDetector(Estimator, ABC):
    """Base class of machine-sound anomaly detectors.

    Args:
        sample_rate: rate in Hz every clip is resampled to.
        channel: channel of multi-channel files to use; `None` averages all channels (downmix).
        n_fft, hop_length, n_mels, power: the log-mel spectrogram (`LogMelSettings`): FFT length,
            samples between frames, mel bands, spectrum exponent.
        batch_size: windows per training step and per scoring forward pass.
        threshold_policy: how the clip threshold is chosen (`ThresholdPolicy`, as for image detectors):
            "false_reject_rate" (the default: flag at most `false_reject_rate` of normal clips) or
            "quantile" (`threshold_quantile` of the normal calibration scores); "recall" and "f1" need
            labelled anomalous clips, which fitting on normal clips never has.
        Other settings (seed, device, the policies' targets): see `Estimator`.
        calibration_fraction: share of the training clips held out of training to calibrate the
            threshold on (at least one clip when positive and there are two or more clips); with none
            held out the threshold is set on the training clips' own scores, which errs low.
    """

    score_names: ClassVar[tuple[str, ...]] = ()
    score: str
    sample_rate: int = setting(16000, POSITIVE_INT)
    channel: int | None = setting(None, Optional(Integer(0), "the mean of all channels"))
    # Checked together by `LogMelSettings`.
    n_fft: int = setting(1024)
    hop_length: int = setting(512)
    n_mels: int = setting(128)
    power: float = setting(2.0)
    batch_size: int = setting(512)
    calibration_fraction: float = setting(0.1, Real(0, 1, closed="left"))

    # ----------------------------------------------------------------------------- subclass hooks
    @property
    def feature_settings(self) -> LogMelSettings:
        """How this detector's clips become log-mel spectrograms: its settings of the same names (a
        detector without one, e.g. `top_db`, gets the `LogMelSettings` default)."""
        return LogMelSettings(
            **{f.name: getattr(self, f.name, f.default) for f in dataclasses.fields(LogMelSettings)}
        )

    @property
    @abstractmethod
    def window_frames(self) -> int:
        """Frames per window, hence the shortest clip the detector can score."""

    @property
    def window_hop(self) -> int:
        """Frames between the starts of consecutive windows: every frame starts one, unless a detector says
        otherwise."""
        return 1

    @abstractmethod
    def _fit_features(self, spectrograms: list[np.ndarray], context: FitContext) -> nn.Module:
        """Build and train the torch module on the training clips' (n_mels, T_i) spectrograms."""

    @abstractmethod
    def _build_module(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """Rebuild the fitted module's architecture for a saved `state`."""

    @abstractmethod
    def _score_windows(self, spectrogram: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        """Every detection score of one clip: name -> (clip score, (W,) window scores)."""

    def _prepare(self) -> None:  # noqa: B027 (an optional hook: most detectors need nothing here)
        """Derive what the fitted module implies but does not store (called after fit and load)."""

    def _check_params(self) -> None:
        super()._check_params()
        self.feature_settings.check()
        if self.threshold_policy in ("recall", "f1"):
            raise ConfigError(
                f"threshold_policy {self.threshold_policy!r} needs labelled anomalous clips, but audio "
                "detectors calibrate on normal clips only: use 'false_reject_rate' or 'quantile'"
            )
        if self.score not in self.score_names:
            raise ConfigError(f"score must be one of {list(self.score_names)}, got {self.score!r}")

    @property
    def threshold_(self) -> float:
        """The clip-score threshold: a clip scoring at or above it is anomalous."""
        self.check_is_fitted()
        return self.calibration_.value_

    def operating_point(self) -> dict[str, Any]:
        """The operating point as the image detectors report it: the policy and its target, the threshold
        and how it was found, where the normal calibration scores come from and how many there are, the
        share of them it flags and the false-reject rate it guarantees at 95 % confidence (both None for
        checkpoints that kept no calibration scores)."""
        self.check_is_fitted()
        return describe_operating_point(self.calibration_, self.good_scores_, self.calibration_source_)

    @property
    def device_(self) -> torch.device:
        """Where the fitted module lives."""
        self.check_is_fitted()
        return next(self.module_.parameters()).device

    # ----------------------------------------------------------------------------- fit and score
    def fit(
        self,
        clips: Sequence[str | Path],
        *,
        cache_dir: str | Path | None = None,
        progress: bool = False,
        work_dir: str | Path | None = None,
        resume: bool = False,
    ) -> Self:
        """Learn what normal sounds like from normal clips.

        Args:
            clips: audio files of normal operation.
            cache_dir: feature cache folder; `None` computes features without caching.
            progress: show progress bars.
            work_dir: folder for the training state (resume after an interruption); `None` keeps none.
            resume: continue from the state in `work_dir`.

        Returns:
            self, with `module_`, `calibration_` (hence `threshold_`), `training_clips_`,
            `held_out_clips_`, `history_` and `fit_seconds_` set.

        Raises:
            ConfigError: a hyper-parameter is outside what is allowed, or no clip is given.
            DataError: a clip is missing, not audio, empty or shorter than `window_frames`.
        """
        self.check_params()
        if not clips:
            raise ConfigError(f"{type(self).__name__}.fit needs at least one clip, got none")
        torch.manual_seed(self.seed)
        context = FitContext.create(self.device, progress, work_dir, resume)
        cache = None if cache_dir is None else FeatureCache(cache_dir)
        paths = [Path(c) for c in clips]
        # Every clip is read before training, so a broken held-out clip fails fast.
        loaded = load_features(paths, self.feature_settings, cache, self.window_frames, progress)
        features = dict(zip(paths, loaded, strict=True))
        rng = np.random.default_rng(self.seed)
        self.training_clips_, self.held_out_clips_ = carve(paths, self.calibration_fraction, rng)
        spectrograms = [features[p] for p in self.training_clips_]
        started = time.perf_counter()
        self.history_: list[dict[str, float]] = []
        self.module_ = self._fit_features(spectrograms, context).eval()
        self.fit_seconds_ = time.perf_counter() - started
        self._prepare()
        if self.held_out_clips_:
            calibration = [features[p] for p in self.held_out_clips_]
            self.calibration_source_ = f"held-out split ({len(self.held_out_clips_)} of {len(clips)} clips)"
        else:
            logger.warning(
                "no clip held out for calibration (%d clip(s), calibration_fraction=%g): the threshold is "
                "set on the training clips' own scores, so it errs low",
                len(clips),
                self.calibration_fraction,
            )
            calibration, self.calibration_source_ = spectrograms, f"in-sample training clips ({len(clips)})"
        self.good_scores_ = np.array([self._score_windows(s)[self.score][0] for s in calibration])
        labels = np.zeros(len(self.good_scores_), dtype=int)
        self.calibration_ = self.policy().image_threshold(self.good_scores_, labels)
        point = self.operating_point()
        logger.info(
            "%s fitted on %d clips in %.1f s; threshold %.4g (%s, %s on %d good scores, %s): guaranteed "
            "false-reject rate <= %.3g at 95%% confidence",
            self.name,
            len(spectrograms),
            self.fit_seconds_,
            point["threshold"],
            point["policy"],
            point["method"],
            point["n_good"],
            point["scores_from"],
            point["guaranteed_false_reject_rate"],
        )
        return self

    @torch.no_grad()
    def score_clips(
        self, clips: Sequence[str | Path], *, cache_dir: str | Path | None = None, progress: bool = False
    ) -> AudioScores:
        """Score clips one at a time (features streamed from disk or the cache).

        Raises:
            NotFittedError: before `fit` or `load`.
            DataError: a clip is missing, not audio, empty or shorter than `window_frames`.
        """
        self.check_is_fitted()
        cache = None if cache_dir is None else FeatureCache(cache_dir)
        clip_scores: dict[str, list[float]] = {name: [] for name in self.score_names}
        frame_scores: list[np.ndarray] = []
        for spectrogram in iter_features(clips, self.feature_settings, cache, self.window_frames, progress):
            scores = self._score_windows(spectrogram)
            for name, (clip_score, _) in scores.items():
                clip_scores[name].append(clip_score)
            frame_scores.append(scores[self.score][1])
        all_scores = {name: np.asarray(values, dtype=np.float64) for name, values in clip_scores.items()}
        return AudioScores(
            clip_scores=all_scores[self.score],
            frame_scores=frame_scores,
            all_scores=all_scores,
            window_frames=self.window_frames,
            window_hop=self.window_hop,
            frame_seconds=self.feature_settings.frame_seconds,
        )

    @torch.no_grad()
    def _forward_in_batches(
        self, windows: np.ndarray, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Run `forward` (a tensor batch -> dict of (B, ...) tensors) over windows in batches, on CPU."""
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(windows), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(windows[start : start + self.batch_size]))
            for key, value in forward(batch.to(self.device_)).items():
                parts.setdefault(key, []).append(value.cpu())
        return {key: torch.cat(values) for key, values in parts.items()}

    # ----------------------------------------------------------------------------- checkpoints
    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write one checkpoint file: format version, detector name, params, state_dict, calibration.

        Raises:
            NotFittedError: before `fit`.
            CheckpointError: the file exists and `force` is False.
        """
        self.check_is_fitted()
        calibration = {
            "threshold": self.calibration_.to_dict(),
            "good_scores": self.good_scores_.tolist(),
            "source": self.calibration_source_,
        }
        params, payload = self.get_params(), {"calibration": calibration}
        return write_checkpoint(path, CHECKPOINT_KIND, self.name, params, self.module_, payload, force)

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], path: str | Path, device: str = "cpu") -> Self:
        """The fitted detector a checkpoint dict (read by `core.checkpoint.read_checkpoint`) describes.

        Checkpoints written before held-out calibration (a float `threshold`, no `calibration`) keep their
        threshold as a `FixedThreshold`.

        Raises:
            CheckpointError: the saved weights do not fit the saved settings.
        """
        # The class itself, not `create`: saved `None` values (e.g. top_db=None) must stay None.
        detector = cls(**{**checkpoint["params"], "device": device})
        module = restore_weights(detector._build_module(checkpoint["state_dict"]), checkpoint, path)
        detector.module_ = module.to(resolve_device(device)).eval()
        calibration = checkpoint.get("calibration")
        if calibration is None:
            warn_refit(path, checkpoint, "on in-sample training scores, which errs low")
            detector.calibration_ = FixedThreshold(float(checkpoint["threshold"])).fit()
            detector.good_scores_ = np.empty(0)
            detector.calibration_source_ = "in-sample training clips"
        else:
            detector.calibration_ = Threshold.from_dict(calibration["threshold"])
            detector.good_scores_ = np.asarray(calibration["good_scores"], dtype=np.float64)
            detector.calibration_source_ = calibration["source"]
        detector._prepare()
        return detector
