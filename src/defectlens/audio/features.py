"""Audio loading and log-mel features, with an on-disk cache keyed by file and settings.

Loading: soundfile decodes the file; a multi-channel clip becomes mono by taking `channel` or, when
`channel` is `None` (the default), the mean of all channels (a downmix); a clip at another sample rate
is resampled to `sample_rate` with librosa's soxr resampler ("soxr_hq").

Features: `mel = librosa.feature.melspectrogram(y, sr, n_fft, hop_length, n_mels, power)` (Hann window,
centred frames, Slaney mel scale: librosa's defaults), then `(20 / power) * log10(max(mel, 1e-10))`, so
10 log10 of the power spectrum for power 2. With `top_db` set, values more than `top_db` below the
clip's maximum are raised to that floor (librosa's `power_to_db`, which AEGAN-AD uses with 80 dB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from defectlens.errors import ConfigError, DataError

__all__ = ["LogMelSettings", "load_audio", "log_mel", "FeatureCache", "iter_features", "load_features"]

logger = logging.getLogger(__name__)

AMIN = 1e-10  # floor of the mel power before the logarithm
CACHE_FORMAT = 1  # bump when the feature computation changes, so old cache entries are not reused


@dataclass(frozen=True)
class LogMelSettings:
    """How a clip becomes a log-mel spectrogram.

    Attributes:
        sample_rate: rate in Hz every clip is resampled to.
        n_fft: FFT length in samples.
        hop_length: samples between consecutive frames.
        n_mels: mel bands.
        power: exponent of the magnitude spectrum (2 = power, 1 = magnitude).
        top_db: dynamic range kept below each clip's maximum in dB; `None` keeps everything.
        channel: channel taken from a multi-channel file; `None` averages all channels.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    power: float = 2.0
    top_db: float | None = None
    channel: int | None = None

    def check(self) -> None:
        """Raise ConfigError naming the first setting outside what is allowed."""
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ConfigError(f"n_mels must be <= n_fft // 2 + 1 = {self.n_fft // 2 + 1}, got {self.n_mels}")
        if not self.power > 0:
            raise ConfigError(f"power must be > 0, got {self.power!r}")
        if self.top_db is not None and not self.top_db > 0:
            raise ConfigError(f"top_db must be > 0 or None, got {self.top_db!r}")
        if self.channel is not None and (not isinstance(self.channel, int) or self.channel < 0):
            raise ConfigError(f"channel must be a channel index >= 0 or None (downmix), got {self.channel!r}")

    @property
    def frame_seconds(self) -> float:
        """Seconds between consecutive frames."""
        return self.hop_length / self.sample_rate


def load_audio(path: str | Path, sample_rate: int, channel: int | None = None) -> np.ndarray:
    """Decode a clip to a mono float32 waveform at `sample_rate`.

    Args:
        path: an audio file soundfile can read (WAV, FLAC, ...).
        sample_rate: target rate in Hz; other rates are resampled.
        channel: channel to keep; `None` averages all channels.

    Returns:
        (n_samples,) float32 waveform in [-1, 1].

    Raises:
        DataError: the file is missing, not audio, or holds no samples.
        ConfigError: `channel` does not exist in the file.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise DataError(f"cannot read audio file {path}: {error}") from error
    if samples.shape[0] == 0:
        raise DataError(f"audio file {path} holds no samples")
    if channel is None:
        mono = samples.mean(axis=1)
    elif channel < samples.shape[1]:
        mono = samples[:, channel]
    else:
        raise ConfigError(f"channel {channel} does not exist in {path}: it has {samples.shape[1]} channel(s)")
    if rate != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


def log_mel(waveform: np.ndarray, settings: LogMelSettings) -> np.ndarray:
    """(n_samples,) waveform -> (n_mels, n_frames) float32 log-mel spectrogram (see the module docstring)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=waveform,
        sr=settings.sample_rate,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        n_mels=settings.n_mels,
        power=settings.power,
    )
    db = (20.0 / settings.power) * np.log10(np.maximum(mel, AMIN))
    if settings.top_db is not None:
        db = np.maximum(db, db.max() - settings.top_db)
    return db.astype(np.float32)


def clip_features(path: str | Path, settings: LogMelSettings) -> np.ndarray:
    """Load `path` and return its log-mel spectrogram (n_mels, n_frames)."""
    return log_mel(load_audio(path, settings.sample_rate, settings.channel), settings)


class FeatureCache:
    """Log-mel spectrograms stored as `.npy` files under `directory`, one per (file, settings).

    The key hashes the resolved path, the file's size and modification time and the settings, so an
    edited clip or a changed setting is computed afresh. Entries are written atomically, so parallel
    runs may share a cache.

    Attributes:
        hits: features read from the cache since creation.
        misses: features computed since creation.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    def entry(self, path: Path, settings: LogMelSettings) -> Path:
        """The cache file of `path` under `settings`."""
        stat = path.stat()
        key = json.dumps(
            [CACHE_FORMAT, str(path.resolve()), stat.st_size, stat.st_mtime_ns, asdict(settings)],
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def get(self, path: str | Path, settings: LogMelSettings) -> np.ndarray:
        """The features of `path`, read from the cache or computed and stored."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"audio file not found: {path}")
        entry = self.entry(path, settings)
        if entry.is_file():
            try:
                features = np.load(entry)
                self.hits += 1
                return features
            except (OSError, ValueError) as error:  # a damaged entry is recomputed
                logger.warning("ignoring unreadable cache entry %s: %s", entry, error)
        features = clip_features(path, settings)
        self.misses += 1
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_name(f"{entry.stem}.{os.getpid()}.tmp.npy")
        np.save(temporary, features)
        temporary.replace(entry)
        return features


def iter_features(
    paths: Sequence[str | Path],
    settings: LogMelSettings,
    cache: FeatureCache | None = None,
    min_frames: int = 1,
    progress: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the log-mel spectrogram (n_mels, n_frames) of each path in order, one clip in memory at a time.

    Args:
        paths: audio files.
        settings: feature settings.
        cache: where to read and store features; `None` always computes.
        min_frames: frames the consumer needs at least (e.g. a model's window length).
        progress: show a progress bar.

    Raises:
        DataError: a file is missing, not audio, empty, or shorter than `min_frames` frames.
    """
    settings.check()
    for path in tqdm(paths, desc="features", unit="clip", disable=not progress, leave=False):
        features = cache.get(path, settings) if cache is not None else clip_features(path, settings)
        n_frames = features.shape[1]
        if n_frames < min_frames:
            raise DataError(
                f"audio clip {path} is too short: {n_frames} frames "
                f"({n_frames * settings.frame_seconds:.3f} s) but the model needs at least {min_frames} "
                f"frames ({min_frames * settings.frame_seconds:.3f} s at hop_length={settings.hop_length}, "
                f"sample_rate={settings.sample_rate})"
            )
        yield features


def load_features(*args: Any, **kwargs: Any) -> list[np.ndarray]:
    """`iter_features` (same arguments) collected into a list."""
    return list(iter_features(*args, **kwargs))
