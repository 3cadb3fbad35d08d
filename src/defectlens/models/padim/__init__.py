"""PaDiM: per-position Gaussian model of good patch features."""

from defectlens.models.padim.detector import Padim

__all__ = ["Padim"]
