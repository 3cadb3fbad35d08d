"""Tiles at working resolution and regions of interest: layout, blending, fitting, exports, ROI rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from defectlens.data.roi import auto_region
from defectlens.data.tiling import TileLayout, tile_origins
from defectlens.errors import ConfigError
from defectlens.export import export_detector
from defectlens.inference import Inferencer
from defectlens.models import load
from defectlens.models.tiling import TiledModule


def test_tile_origins_cover_the_axis_with_at_least_the_overlap():
    assert tile_origins(1024, 256, 0.25) == [0, 192, 384, 576, 768]
    assert tile_origins(256, 256, 0.25) == [0]
    assert tile_origins(300, 256, 0.25) == [0, 44]
    assert tile_origins(512, 256, 0.0) == [0, 256]
    with pytest.raises(ConfigError, match="tile_size 300 is larger"):
        tile_origins(256, 300, 0.25)


def test_blend_weights_sum_to_one_and_roi_drops_empty_tiles():
    layout = TileLayout.plan((160, 96), 64, 0.25)
    assert len(layout) == 3 * 2
    total = torch.zeros(160, 96)
    for i, (top, left) in enumerate(layout.origins):
        total[top : top + 64, left : left + 64] += layout.blend()[i]
    torch.testing.assert_close(total, torch.ones(160, 96))
    roi = np.zeros((160, 96), bool)
    roi[:20, :20] = True
    assert TileLayout.plan((160, 96), 64, 0.25, roi).origins == ((0, 0),)
    with pytest.raises(ConfigError, match="empty"):
        TileLayout.plan((160, 96), 64, 0.25, np.zeros((160, 96), bool))


class MeanMap(torch.nn.Module):
    """A tile model whose map is the tile's mean over channels and whose score is the map maximum."""

    def forward(self, images):
        maps = images.mean(1)
        return maps.flatten(1).amax(1), maps


def test_tiled_module_stitches_maps_back_into_the_image():
    layout = TileLayout.plan((96, 128), 48, 0.5)
    images = torch.rand(2, 3, 96, 128)
    scores, maps = TiledModule(MeanMap(), layout)(images)
    torch.testing.assert_close(maps, images.mean(1))  # tiles agree where they overlap: blending is exact
    torch.testing.assert_close(scores, images.mean(1).flatten(1).amax(1))
    roi = torch.zeros(96, 128, dtype=torch.bool)
    roi[:, :64] = True
    scores, maps = TiledModule(MeanMap(), TileLayout.plan((96, 128), 48, 0.5, roi.numpy()), roi)(images)
    inside = images.mean(1)[:, :, :64]
    torch.testing.assert_close(scores, inside.flatten(1).amax(1))
    torch.testing.assert_close(maps[:, :, :64], inside)
    torch.testing.assert_close(maps[:, :, 64:].amax((1, 2)), inside.flatten(1).amin(1))


def test_auto_region_covers_every_place_the_part_was_seen():
    images = []
    for left in (8, 32):  # a dark part on a bright background, in two places
        image = np.full((64, 64), 0.8)
        image[20:44, left : left + 20] = 0.2
        images.append(image)
    region = auto_region(images)
    assert region[20:44, 8:52].all() and not region[:10].any() and not region[:, :4].any()
    with pytest.raises(ConfigError, match="needs training images"):
        auto_region([])


@pytest.fixture(scope="module")
def screws(tmp_path_factory, make_texture):
    """Good 128x128 images, and a test image with a scratch in the right half (outside a left-half ROI)."""
    root = tmp_path_factory.mktemp("screws")
    good = [make_texture(i, (128, 128)) for i in range(6)]
    paths = []
    for i, image in enumerate(good):
        paths.append(root / f"good{i}.png")
        Image.fromarray(image).save(paths[-1])
    roi = np.zeros((128, 128), np.uint8)
    roi[:, :64] = 255
    Image.fromarray(roi).save(root / "roi.png")
    test = make_texture(50, (128, 128))
    scratched = test.copy()
    scratched[60:70, 90:120] = 255
    return paths, root / "roi.png", test, scratched


def test_roi_keeps_outside_patches_out_of_the_bank_and_outside_defects_out_of_the_score(screws, quick):
    paths, roi, test, scratched = screws
    # Lite0 layers 2+3 at 128 px: a 16x16 patch grid per image, of which the ROI holds the left 8 columns.
    full = quick("patchcore", image_size=128, coreset_ratio=1.0).fit(paths)
    inspected = quick("patchcore", image_size=128, coreset_ratio=1.0, roi=str(roi)).fit(paths)
    assert len(full.tile_module_.memory_bank) == 6 * 16 * 16
    assert len(inspected.tile_module_.memory_bank) == 6 * 16 * 8
    assert inspected.region_of_interest[:, :64].all() and not inspected.region_of_interest[:, 64:].any()
    tiled = quick("patchcore", image_size=128, tile_size=64, coreset_ratio=1.0, roi=str(roi)).fit(paths)
    for detector in (inspected, tiled):
        clean, dirty = detector.predict([test, scratched]).score
        assert dirty == pytest.approx(clean, abs=1e-6)
    clean, dirty = full.predict([test, scratched]).score
    assert dirty > clean  # the same defect counts where it is inspected


def test_a_tiled_bank_keeps_the_ratio_of_one_tile_per_image(screws, quick):
    detector = quick("patchcore", image_size=128, tile_size=64, coreset_ratio=0.5).fit(screws[0])
    # 6 images x 9 tiles x an 8x8 grid, of which 0.5 of one tile's worth per image
    assert len(detector.tile_module_.memory_bank) == round(0.5 / 9 * 6 * 9 * 64)


@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_tiled_detectors_round_trip_and_export_with_parity(name, screws, quick, tmp_path):
    paths, _, test, scratched = screws
    detector = quick(name, image_size=128, tile_size=64, tile_overlap=0.25).fit(paths)
    reference = detector.predict([test, scratched])
    assert reference.anomaly_map.shape == (2, 128, 128)
    detector.save(tmp_path / "model.pt")
    np.testing.assert_allclose(load(tmp_path / "model.pt").predict([test, scratched]).score, reference.score)
    for fmt in ("onnx", "openvino"):
        exported = Inferencer(export_detector(detector, tmp_path / fmt, fmt)).predict([test, scratched])
        assert np.abs(exported.score - reference.score).max() < 1e-3
        assert np.abs(exported.anomaly_map - reference.anomaly_map).max() < 1e-3


def test_tile_larger_than_the_working_resolution_is_refused(quick, screws):
    with pytest.raises(ConfigError, match="tile_size 256 is larger than image_size 128"):
        quick("patchcore", image_size=128, tile_size=256).fit(screws[0])


@pytest.mark.parametrize("name", ["stfpm", "autoencoder"])
def test_trained_detectors_fit_on_tiles_and_score_whole_images(name, screws, quick, tmp_path):
    paths, _, test, scratched = screws
    detector = quick(name, image_size=128, tile_size=64, max_epochs=2).fit(paths)
    prediction = detector.predict([test, scratched])
    assert prediction.anomaly_map.shape == (2, 128, 128) and np.isfinite(prediction.score).all()
    detector.save(tmp_path / "model.pt")
    np.testing.assert_allclose(load(tmp_path / "model.pt").predict([test, scratched]).score, prediction.score)
