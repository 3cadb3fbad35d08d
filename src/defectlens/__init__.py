"""defectlens: find defects without defect labels.

Learn what good looks like from good images only, then score, localise and report what departs from it.
Names load on first use, so the torch-free inference path (`defectlens.inference`) never imports torch.
"""

__version__ = "0.1.0"

from defectlens._lazy import lazy_exports  # noqa: E402

_EXPORTS = {
    **{
        name: "defectlens.data" for name in ("DataSplits", "Record", "load_elpv", "load_folder", "load_mvtec")
    },
    **{
        name: "defectlens.errors"
        for name in (
            "CheckpointError",
            "ConfigError",
            "DataError",
            "DefectlensError",
            "NotFittedError",
            "WeightsError",
        )
    },
    **{name: "defectlens.models" for name in ("Detector", "create", "list_detectors", "load")},
    "Prediction": "defectlens.post.prediction",
    "Inferencer": "defectlens.inference",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *sorted(_EXPORTS)]
