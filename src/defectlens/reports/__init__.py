"""Report figures: overlays, panels, ROC curves, score histograms."""

from defectlens.reports.figures import (
    encode_png,
    outline,
    overlay,
    panel,
    save_image,
    save_jpeg,
    save_operating_curve,
    save_roc_curve,
    save_score_histogram,
    shrink,
)

__all__ = [
    "encode_png",
    "outline",
    "overlay",
    "panel",
    "save_image",
    "save_jpeg",
    "save_operating_curve",
    "save_roc_curve",
    "save_score_histogram",
    "shrink",
]
