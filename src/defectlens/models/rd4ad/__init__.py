"""RD4AD: a student decoder rebuilds a pretrained teacher's features from a one-class embedding of them."""

from defectlens.models.rd4ad.detector import Rd4ad

__all__ = ["Rd4ad"]
