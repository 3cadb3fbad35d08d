import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from defectlens.models.smoothing import gaussian_kernel, upsample_and_blur


def test_kernel_is_normalised_and_truncated_at_four_sigma():
    kernel = gaussian_kernel(4.0)
    assert len(kernel) == 33 and torch.isclose(kernel.sum(), torch.tensor(1.0))


def test_blur_matches_scipy_with_reflected_borders():
    scores = torch.rand(2, 40, 40)
    ours = upsample_and_blur(scores, (40, 40), sigma=2.0).numpy()
    for image, mine in zip(scores.numpy(), ours, strict=True):
        # torch 'reflect' excludes the edge pixel, scipy's equivalent mode is 'mirror'.
        np.testing.assert_allclose(
            mine, gaussian_filter(image, sigma=2.0, mode="mirror", truncate=4.0), atol=1e-5
        )


def test_upsampling_keeps_a_constant_map_constant():
    maps = upsample_and_blur(torch.full((1, 8, 8), 3.0), (64, 64), sigma=4.0)
    assert maps.shape == (1, 64, 64) and torch.allclose(maps, torch.tensor(3.0))
