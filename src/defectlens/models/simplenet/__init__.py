"""SimpleNet: a discriminator trained to tell good patch features from noise-perturbed ones."""

from defectlens.models.simplenet.detector import SimpleNet

__all__ = ["SimpleNet"]
