"""Reconstruction autoencoder with optional LAMP loss amplification (Park et al.)."""

from defectlens.models.autoencoder.detector import Autoencoder

__all__ = ["Autoencoder"]
