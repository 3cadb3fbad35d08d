"""Reconstruction losses and LAMP against hand-computed values; LAMP stays finite at the clamp."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_msssim import ssim

from defectlens.models.autoencoder.losses import (
    LAMP_EPS,
    elementwise_distance,
    lamp,
    reconstruction_loss,
    ssim_map,
)


def pixels(*values: float) -> torch.Tensor:
    """One image, one channel, one row: (1, 1, 1, n)."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_l1_and_l2_by_hand():
    target, recon = pixels(1.0, 0.0, 0.5, 0.2), pixels(0.5, 0.9, 0.5, 0.0)
    torch.testing.assert_close(elementwise_distance("l1", target, recon), pixels(0.5, 0.9, 0.0, 0.2))
    torch.testing.assert_close(elementwise_distance("l2", target, recon), pixels(0.25, 0.81, 0.0, 0.04))
    # Means over the four elements.
    torch.testing.assert_close(reconstruction_loss("l1", False, target, recon), torch.tensor([0.4]))
    torch.testing.assert_close(reconstruction_loss("l2", False, target, recon), torch.tensor([0.275]))


def test_lamp_formula_by_hand():
    # -log(1 - d): d = 0.5 -> log 2, d = 0.9 -> log 10, d = 0.25 -> log(4/3), d = 0 -> 0.
    expected = [math.log(2), math.log(10), math.log(4 / 3), 0.0]
    torch.testing.assert_close(lamp(pixels(0.5, 0.9, 0.25, 0.0)), pixels(*expected))
    target, recon = pixels(1.0, 0.0, 0.5, 0.2), pixels(0.5, 0.9, 0.5, 0.0)
    # L1-LAMP: d = 0.5, 0.9, 0, 0.2 -> mean of log 2, log 10, 0, log 1.25.
    l1 = (math.log(2) + math.log(10) + 0.0 + math.log(1.25)) / 4
    torch.testing.assert_close(reconstruction_loss("l1", True, target, recon), torch.tensor([l1]))
    # L2-LAMP: d = 0.25, 0.81, 0, 0.04 -> mean of log(4/3), log(1/0.19), 0, log(1/0.96).
    l2 = (math.log(4 / 3) - math.log(0.19) + 0.0 - math.log(0.96)) / 4
    torch.testing.assert_close(reconstruction_loss("l2", True, target, recon), torch.tensor([l2]))


def test_lamp_amplifies_large_errors_and_matches_small_ones():
    small, large = torch.tensor(1e-3), torch.tensor(0.8)
    assert float(lamp(small)) == pytest.approx(1e-3, rel=1e-3)  # -log(1 - d) ~ d for small d
    assert float(lamp(large)) > 2 * float(large)


@pytest.mark.parametrize("distance", [1.0, 1.0 - LAMP_EPS / 2, 1.0 - LAMP_EPS, 2.0, -0.1])
def test_lamp_is_finite_with_finite_gradient_at_the_clamp(distance):
    d = torch.tensor(distance, requires_grad=True)
    value = lamp(d)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(d.grad)
    assert float(value.detach()) <= -math.log(LAMP_EPS) + 1e-3
    assert float(d.grad) <= 1 / LAMP_EPS * 1.01


def test_lamp_of_a_saturated_reconstruction_trains_without_nan():
    # Target 1 reconstructed as exactly 0: the L1 and L2 distance is 1, the clamp's edge.
    logits = torch.full((1, 1, 4, 4), -200.0, requires_grad=True)  # sigmoid -> 0.0 in float32
    recon = torch.sigmoid(logits)
    assert float(recon.detach().max()) == 0.0
    for kind in ("l1", "l2", "ssim"):
        loss = reconstruction_loss(
            kind, True, torch.ones(1, 1, 16, 16), torch.sigmoid(logits).repeat(1, 1, 4, 4)
        )
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()
        logits.grad = None


def test_ssim_map_matches_pytorch_msssim():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32)
    recon = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    local = ssim_map(target, recon)
    assert local.shape == (2, 3, 22, 22)
    torch.testing.assert_close(
        local.flatten(1).mean(1), ssim(target, recon, data_range=1.0, size_average=False)
    )
    expected = 1 - ssim(target, recon, data_range=1.0, size_average=False)
    torch.testing.assert_close(reconstruction_loss("ssim", False, target, recon), expected)
    assert ssim_map(target, recon, same_size=True).shape == (2, 3, 32, 32)


def test_ssim_distance_is_zero_for_identical_images_and_in_unit_range():
    torch.manual_seed(1)
    image = torch.rand(1, 1, 24, 24)
    torch.testing.assert_close(elementwise_distance("ssim", image, image), torch.zeros(1, 1, 14, 14))
    inverted = elementwise_distance("ssim", image, 1 - image, same_size=True)
    assert inverted.shape == (1, 1, 24, 24)
    assert (inverted >= 0).all() and (inverted <= 1).all() and inverted.mean() > 0.5
    # LAMP of SSIM: the mean of -log(1 - (1 - SSIM_local) / 2) over the valid windows.
    d = elementwise_distance("ssim", image, 1 - image)
    torch.testing.assert_close(
        reconstruction_loss("ssim", True, image, 1 - image), -torch.log(1 - d).mean().view(1)
    )


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="loss must be one of"):
        elementwise_distance("huber", pixels(0.0), pixels(1.0))
