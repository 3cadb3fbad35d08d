"""PaDiM's Gaussian statistics and Mahalanobis map against numpy, on hand-made features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defectlens.errors import ConfigError
from defectlens.models.padim import Padim
from defectlens.models.padim.torch_model import PadimModel


def test_inverse_covariance_matches_numpy():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 40, 3)) * [1.0, 2.0, 0.5]  # (positions, images, channels)
    v = torch.from_numpy(vectors)
    centred = v - v.mean(1, keepdim=True)
    scatter = torch.bmm(centred.transpose(1, 2), centred)
    inverse = Padim(regularization=0.01)._inverse(scatter, 39)
    for p in range(5):
        expected = np.linalg.inv(np.cov(vectors[p], rowvar=False) + 0.01 * np.eye(3))
        np.testing.assert_allclose(inverse[p].numpy(), expected, rtol=1e-4)


class Constant(torch.nn.Module):
    """A stand-in extractor returning the image itself as a 3-channel feature map."""

    channels = (3,)

    def forward(self, x):
        return [x]


def test_mahalanobis_map_by_hand():
    # Identity covariance and zero mean: the distance is the Euclidean norm of the selected channels.
    model = PadimModel(Constant(), torch.tensor([0, 2]), torch.zeros(4, 2), torch.eye(2).repeat(4, 1, 1), 0.0)
    images = torch.zeros(1, 3, 2, 2)
    images[0, 0, 1, 1], images[0, 2, 1, 1], images[0, 1, 0, 0] = 3.0, 4.0, 9.0  # channel 1 is not selected
    scores, maps = model(images)
    assert maps[0, 1, 1] == pytest.approx(5.0) and maps[0, 0, 0] < 5.0
    assert scores[0] == pytest.approx(5.0)


def test_too_many_features_names_the_setting(tiny_mvtec):
    from defectlens.data import load_mvtec

    with pytest.raises(ConfigError, match="n_features must be at most the 176 channels"):
        Padim(n_features=500, image_size=64, device="cpu").fit(load_mvtec(tiny_mvtec))
