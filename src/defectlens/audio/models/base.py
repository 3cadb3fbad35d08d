"""The one interface of machine-sound detectors: fit on normal clips, score clips, save/load one file.

A detector turns each clip into a log-mel spectrogram (its own `feature_settings`), cuts it into
windows of `window_frames` frames every `window_hop` frames, scores every window and combines the
window scores into one clip score. A subclass stores its keyword hyper-parameters in `__init__` and
implements `_fit_features` (build and train a torch module on training spectrograms),
`_build_module` (rebuild it for a saved state) and `_score_windows` (every detection score of one
clip). Thresholds, checkpoints, devices and feature loading live here once.
"""

from __future__ import annotations

import inspect
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

from defectlens import __version__
from defectlens.audio.features import FeatureCache, LogMelSettings, iter_features, load_features
from defectlens.errors import CheckpointError, ConfigError, NotFittedError
from defectlens.models.base import FitContext, resolve_device

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
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


class AudioDetector(ABC):
    """Base class of machine-sound anomaly detectors.

    Args:
        sample_rate: rate in Hz every clip is resampled to.
        channel: channel of multi-channel files to use; `None` averages all channels (downmix).
        batch_size: windows per training step and per scoring forward pass.
        threshold_quantile: quantile of the training clips' scores used as the decision threshold
            (in-sample scores, so the threshold errs low).
        seed: seed of every random choice.
        device: "auto", "cpu" or "cuda".
    """

    name: ClassVar[str] = ""
    score_names: ClassVar[tuple[str, ...]] = ()
    score: str

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        channel: int | None = None,
        batch_size: int = 512,
        threshold_quantile: float = 0.9,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.sample_rate = sample_rate
        self.channel = channel
        self.batch_size = batch_size
        self.threshold_quantile = threshold_quantile
        self.seed = seed
        self.device = device

    # ----------------------------------------------------------------------------- subclass hooks
    @property
    @abstractmethod
    def feature_settings(self) -> LogMelSettings:
        """How this detector's clips become log-mel spectrograms."""

    @property
    @abstractmethod
    def window_frames(self) -> int:
        """Frames per window, hence the shortest clip the detector can score."""

    @property
    @abstractmethod
    def window_hop(self) -> int:
        """Frames between the starts of consecutive windows."""

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
        """Validate hyper-parameters; subclasses extend it and call super()."""
        self.feature_settings.check()
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not 0 < self.threshold_quantile <= 1:
            raise ConfigError(f"threshold_quantile must be in (0, 1], got {self.threshold_quantile!r}")
        if self.score not in self.score_names:
            raise ConfigError(f"score must be one of {list(self.score_names)}, got {self.score!r}")
        resolve_device(self.device)

    # ----------------------------------------------------------------------------- parameters
    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the keyword hyper-parameters, read from the `__init__` signatures."""
        names: list[str] = []
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and issubclass(klass, AudioDetector):
                signature = inspect.signature(klass.__init__)
                names += [p for p in signature.parameters if p != "self" and p not in names]
        return names

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters as given to the constructor."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit() or load a checkpoint first"
            )

    @property
    def device_(self) -> torch.device:
        """Where the fitted module lives."""
        self._check_is_fitted()
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
            self, with `module_`, `threshold_`, `history_` and `fit_seconds_` set.

        Raises:
            ConfigError: a hyper-parameter is outside what is allowed, or no clip is given.
            DataError: a clip is missing, not audio, empty or shorter than `window_frames`.
        """
        self._check_params()
        if not clips:
            raise ConfigError(f"{type(self).__name__}.fit needs at least one clip, got none")
        torch.manual_seed(self.seed)
        context = FitContext(
            device=resolve_device(self.device),
            progress=progress,
            work_dir=None if work_dir is None else Path(work_dir),
            resume=resume,
        )
        cache = None if cache_dir is None else FeatureCache(cache_dir)
        spectrograms = load_features(clips, self.feature_settings, cache, self.window_frames, progress)
        started = time.perf_counter()
        self.history_: list[dict[str, float]] = []
        self.module_ = self._fit_features(spectrograms, context).eval()
        self.fit_seconds_ = time.perf_counter() - started
        self._prepare()
        train_scores = np.array([self._score_windows(s)[self.score][0] for s in spectrograms])
        self.threshold_ = float(np.quantile(train_scores, self.threshold_quantile))
        logger.info("%s fitted on %d clips in %.1f s", self.name, len(clips), self.fit_seconds_)
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
        self._check_is_fitted()
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
        """Write one checkpoint file: format version, detector name, params, state_dict, threshold.

        Raises:
            NotFittedError: before `fit`.
            CheckpointError: the file exists and `force` is False.
        """
        self._check_is_fitted()
        path = Path(path)
        if path.exists() and not force:
            raise CheckpointError(f"checkpoint {path} exists; pass force=True (--force) to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "format_version": FORMAT_VERSION,
            "defectlens_version": __version__,
            "kind": CHECKPOINT_KIND,
            "detector": self.name,
            "params": self.get_params(),
            "state_dict": {k: v.cpu() for k, v in self.module_.state_dict().items()},
            "threshold": self.threshold_,
        }
        torch.save(checkpoint, path)
        return path


def load_audio_detector(path: str | Path, device: str = "cpu") -> AudioDetector:
    """Rebuild a fitted detector from a checkpoint written by `AudioDetector.save`.

    Raises:
        CheckpointError: the file is missing, unreadable, not an audio detector checkpoint, or of a
            newer format.
    """
    from defectlens.audio.models.registry import audio_detector_class

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"audio checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a corrupt file
        raise CheckpointError(f"cannot read audio checkpoint {path}: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path} is not a defectlens audio detector checkpoint")
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {checkpoint['format_version']}; this defectlens reads up to "
            f"{FORMAT_VERSION}: upgrade defectlens"
        )
    if checkpoint["defectlens_version"] != __version__:
        logger.warning("checkpoint %s was written by defectlens %s", path, checkpoint["defectlens_version"])
    # The class itself, not `create`: saved `None` values (e.g. top_db=None) must stay None.
    detector = audio_detector_class(checkpoint["detector"])(**{**checkpoint["params"], "device": device})
    module = detector._build_module(checkpoint["state_dict"])
    module.load_state_dict(checkpoint["state_dict"])
    detector.module_ = module.to(resolve_device(device)).eval()
    detector.threshold_ = float(checkpoint["threshold"])
    detector._prepare()
    return detector
