"""The DCGAN networks for every size, tiling, and the two scorers."""

from __future__ import annotations

import pytest
import torch

from defectlens.models.gan.torch_model import (
    GAN_SIZES,
    Discriminator,
    Encoder,
    EncoderScorer,
    Generator,
    LatentSearchScorer,
    from_tiles,
    to_tiles,
)


@pytest.mark.parametrize("size", GAN_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_size_has_the_right_shapes(size, channels):
    generator = Generator(size, channels, latent_dim=7, width=4).eval()
    discriminator = Discriminator(size, channels, width=4, spectral_norm=True).eval()
    encoder = Encoder(size, channels, latent_dim=7, width=4).eval()
    with torch.no_grad():
        images = generator(torch.randn(2, 7))
        assert images.shape == (2, channels, size, size)
        assert images.min() >= -1 and images.max() <= 1  # tanh
        assert discriminator(images).shape == (2,)
        assert discriminator.features(images).shape == (2, 4 * 8 * 4 * 4)  # width x 8 channels on 4x4
        assert encoder(images).shape == (2, 7)


def test_generator_stages_double_the_grid_from_4x4():
    layers = [m for m in Generator(128, 3, 10, 8).modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(layers) == 6  # 4 -> 8 -> 16 -> 32 -> 64 -> 128, after the 1 -> 4 projection
    assert [m.out_channels for m in layers] == [64, 64, 32, 16, 8, 3]


def test_tiles_round_trip_in_row_major_order():
    maps = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 1, 8, 12)
    tiles = to_tiles(maps, 4)
    assert tiles.shape == (2 * 2 * 3, 1, 4, 4)
    torch.testing.assert_close(tiles[1, 0], maps[0, 0, :4, 4:8])
    torch.testing.assert_close(tiles[3, 0], maps[0, 0, 4:, :4])
    torch.testing.assert_close(from_tiles(tiles[:, 0], 2, 3), maps[:, 0])


def _networks(size=64, channels=3):
    torch.manual_seed(0)
    return Generator(size, channels, 8, 4).eval(), Discriminator(size, channels, 4, False).eval()


def _search(steps: int, channels: int = 3) -> LatentSearchScorer:
    generator, discriminator = _networks(channels=channels)
    tiling = {"image_size": 64, "tile_size": 64, "channels": channels, "blur_sigma": 1.0}
    search = {"steps": steps, "lr": 0.05, "lam": 0.1, "candidates": 16, "seed": 0}
    return LatentSearchScorer(generator, discriminator, **search, **tiling).eval()


def test_latent_search_lowers_each_images_loss():
    images = torch.rand(3, 3, 64, 64)
    unsearched, searcher = _search(0), _search(30)
    with torch.inference_mode():  # as predict runs it: the search must still get its gradients
        start, _ = unsearched(images)
        searched, maps = searcher(images)
    assert (searched < start).all()
    assert maps.shape == (3, 64, 64)


def test_latent_search_score_does_not_depend_on_the_batch():
    images = torch.rand(3, 3, 64, 64)
    scorer = _search(5)
    together, _ = scorer(images)
    alone, _ = scorer(images[1:2])
    torch.testing.assert_close(alone, together[1:2], rtol=1e-4, atol=1e-6)


def test_patch_scorer_stitches_tiles_and_takes_the_worst():
    generator, discriminator = _networks()
    encoder = Encoder(64, 3, 8, 4).eval()
    tiling = {"image_size": 128, "tile_size": 64, "channels": 3, "blur_sigma": 0.0}
    scorer = EncoderScorer(generator, discriminator, encoder, kappa=1.0, **tiling).eval()
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        scores, maps = scorer(images)
        tile_scores, _ = scorer.izif_loss(to_tiles(images * 2 - 1, 64))
    assert maps.shape == (2, 128, 128)
    torch.testing.assert_close(scores, tile_scores.reshape(2, 4).amax(dim=1))


def test_grey_scorer_reads_rgb_input():
    scorer = _search(1, channels=1)
    scores, maps = scorer(torch.rand(2, 3, 64, 64))
    assert scores.shape == (2,) and maps.shape == (2, 64, 64)
