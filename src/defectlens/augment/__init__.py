"""GAN data augmentation for rare defect classes: train the DCGAN on one class, generate images, check
them for copies of the training data and measure their quality.

Names load on first use, so `import defectlens.augment` loads no torch.
"""

from defectlens._lazy import lazy_exports

_EXPORTS = {
    **{name: "defectlens.augment.runs" for name in ("AugmentRun", "generate_run", "load_run", "train_run")},
    **{name: "defectlens.augment.check" for name in ("check_run", "copy_check", "quality")},
    **{
        name: "defectlens.augment.metrics"
        for name in ("copy_statistics", "frechet_distance", "kernel_distance", "mmd2_unbiased")
    },
    "load_image_set": "defectlens.augment.images",
    "Embedder": "defectlens.augment.features",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
