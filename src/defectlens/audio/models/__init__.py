"""Machine-sound detectors: one module per model family, all behind the `AudioDetector` interface."""

from defectlens.audio.models.base import AudioDetector, AudioScores
from defectlens.audio.models.registry import (
    audio_detector_class,
    create,
    list_audio_detectors,
    load_audio_detector,
    register,
)

__all__ = [
    "AudioDetector",
    "AudioScores",
    "audio_detector_class",
    "create",
    "list_audio_detectors",
    "load_audio_detector",
    "register",
]
