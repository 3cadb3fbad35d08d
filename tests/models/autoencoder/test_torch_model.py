"""The autoencoder module: shapes, grey conversion, anomaly maps and image scores by hand."""

from __future__ import annotations

import pytest
import torch

from defectlens.models.autoencoder.torch_model import ConvAutoencoder, stage_widths


@pytest.mark.parametrize(("channels", "depth", "size"), [(1, 3, 32), (3, 4, 64), (3, 1, 32), (1, 5, 64)])
def test_shapes_and_range(channels, depth, size):
    module = ConvAutoencoder(size, channels=channels, depth=depth, width=4, latent_dim=8).eval()
    images = torch.rand(2, 3, size, size)
    target = module.prepare(images)
    assert target.shape == (2, channels, size, size)
    recon = module.reconstruct(target)
    assert recon.shape == target.shape and (recon >= 0).all() and (recon <= 1).all()
    scores, maps = module(images)
    assert scores.shape == (2,) and maps.shape == (2, size, size)
    # The bottleneck is a latent_dim vector.
    assert module.encoder(target).shape == (2, 8, 1, 1)


def test_stage_widths_double_up_to_eight_times():
    assert stage_widths(16, 5) == [16, 32, 64, 128, 128]


def test_grey_conversion_keeps_grey_images():
    module = ConvAutoencoder(32, channels=1, depth=2, width=4, latent_dim=4)
    grey = torch.rand(2, 1, 32, 32).expand(-1, 3, -1, -1)
    torch.testing.assert_close(module.prepare(grey), grey[:, :1])
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    torch.testing.assert_close(module.prepare(red), torch.full((1, 1, 32, 32), 0.299))


def test_anomaly_map_is_the_channel_mean_of_the_distance():
    module = ConvAutoencoder(32, channels=3, depth=2, width=4, latent_dim=4, map_metric="l1", blur_sigma=0.0)
    target = torch.zeros(1, 3, 32, 32)
    recon = torch.zeros(1, 3, 32, 32)
    recon[0, 0, 5, 7] = 0.6
    recon[0, 1, 5, 7] = 0.3
    maps = module.anomaly_map(target, recon)
    assert float(maps[0, 5, 7]) == pytest.approx(0.3)  # (0.6 + 0.3 + 0) / 3
    assert float(maps.sum()) == pytest.approx(0.3)
    module.map_metric = "l2"
    assert float(module.anomaly_map(target, recon)[0, 5, 7]) == pytest.approx((0.36 + 0.09) / 3)


def test_image_scores_by_hand():
    maps = torch.zeros(1, 10, 10)
    maps[0, 0, :4] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    module = ConvAutoencoder(10, channels=1, depth=1, width=2, latent_dim=2, image_score="max")
    assert float(module.score(maps)) == 4.0
    module.image_score = "mean"
    assert float(module.score(maps)) == pytest.approx(10 / 100)
    module = ConvAutoencoder(10, channels=1, depth=1, width=2, latent_dim=2, image_score="topk", top_k=0.03)
    assert module.top_k_pixels == 3
    assert float(module.score(maps)) == pytest.approx(3.0)  # mean of 4, 3, 2


def test_start_at_mean_makes_the_output_bias_the_mean():
    module = ConvAutoencoder(32, channels=3, depth=3, width=4, latent_dim=8)
    torch.nn.init.zeros_(module.decoder[-2].weight)  # leaves the bias alone to decide the output
    module.start_at_mean(torch.tensor([0.13, 0.5, 0.999]))
    recon = module.reconstruct(torch.rand(2, 3, 32, 32))
    expected = torch.tensor([0.13, 0.5, 0.99]).view(1, 3, 1, 1).expand_as(recon)  # clamped to [0.01, 0.99]
    torch.testing.assert_close(recon, expected)
