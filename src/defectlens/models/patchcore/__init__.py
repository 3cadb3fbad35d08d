"""PatchCore: coreset memory bank of good patch features."""

from defectlens.models.patchcore.detector import PatchCore

__all__ = ["PatchCore"]
