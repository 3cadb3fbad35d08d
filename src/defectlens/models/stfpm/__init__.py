"""STFPM: a student network trained to reproduce a pretrained teacher's feature pyramid on good images."""

from defectlens.models.stfpm.detector import Stfpm

__all__ = ["Stfpm"]
