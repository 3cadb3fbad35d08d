"""GAN detectors: a DCGAN scored by AnoGAN's latent search or by f-AnoGAN's encoder."""

from defectlens.models.gan.detector import AnoGAN, DcganDetector, FAnoGAN

__all__ = ["AnoGAN", "DcganDetector", "FAnoGAN"]
