"""Train, test, predict and export: the jobs the CLI runs, as plain functions.

Names load on first use: predicting from an exported artefact must not import torch.
"""

from defectlens._lazy import lazy_exports

_EXPORTS = {
    **{name: "defectlens.engine.predict" for name in ("PREDICTIONS", "predict_images")},
    **{
        name: "defectlens.engine.runs"
        for name in ("CHECKPOINT", "METRICS", "REPORT", "TRAINING_DIR", "DataSpec", "RunInfo")
    },
    **{name: "defectlens.engine.test" for name in ("Scored", "evaluate_run", "score_records")},
    **{name: "defectlens.engine.train" for name in ("TrainResult", "train")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
