"""Machine-sound anomaly detection: DCASE Task 2 clips, log-mel features, AEGAN-AD and the DCASE baseline.

Names load on first use, so `import defectlens.audio` loads neither torch nor librosa.
"""

from defectlens._lazy import lazy_exports

_EXPORTS = {
    **{name: "defectlens.audio.files" for name in ("ClipInfo", "list_clips", "parse_clip_name")},
    **{
        name: "defectlens.audio.features"
        for name in ("FeatureCache", "LogMelSettings", "iter_features", "load_audio", "log_mel")
    },
    **{
        name: "defectlens.audio.models"
        for name in ("AudioDetector", "AudioScores", "create", "list_audio_detectors", "load_audio_detector")
    },
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
