"""Audio detectors register themselves by name where they are defined (`@register`); the CLI and
checkpoints resolve names, and `load_audio_detector` rebuilds checkpoints (`device="cpu"` by default),
only here."""

from __future__ import annotations

from defectlens.audio.models.base import CHECKPOINT_KIND, AudioDetector
from defectlens.registry import Registry

_AUDIO_DETECTORS: Registry[type[AudioDetector]] = Registry(
    "audio model", package="defectlens.audio.models", checkpoint_kind=CHECKPOINT_KIND
)

register = _AUDIO_DETECTORS.register
list_audio_detectors = _AUDIO_DETECTORS.names
audio_detector_class = _AUDIO_DETECTORS.get
create = _AUDIO_DETECTORS.create
load_audio_detector = _AUDIO_DETECTORS.load
