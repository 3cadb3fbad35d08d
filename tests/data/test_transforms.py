from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from defectlens.data.transforms import Geometry, Resize
from defectlens.errors import ConfigError


def _const(height: int, width: int, value=(200, 100, 50)) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.uint8), (height, width, 3)).copy()


def test_squash_shape_and_range() -> None:
    img = np.random.default_rng(0).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    out, geom = Resize(64).image(img)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert geom == Geometry((50, 100), (0, 0, 64, 64), (64, 64))


def test_squash_rectangular_size() -> None:
    out, geom = Resize((64, 96)).image(_const(50, 100))
    assert out.shape == (3, 64, 96)
    assert geom.content_box == (0, 0, 64, 96)


def test_squash_mixed_axes() -> None:
    # height grows (40 -> 64), width shrinks (200 -> 64): two passes, still exact for a flat image
    out, _ = Resize(64).image(_const(40, 200))
    assert out.shape == (3, 64, 64)
    np.testing.assert_allclose(out[:, 10, 10], np.array([200, 100, 50]) / 255, atol=1e-6)


def test_pad_wide_image_hand_computed() -> None:
    # H=50, W=100 into 64: scale 0.64 -> 32 x 64, centred vertically: top (64 - 32) // 2 = 16
    out, geom = Resize(64, mode="pad").image(_const(50, 100))
    assert geom.original_size == (50, 100)
    assert geom.content_box == (16, 0, 32, 64)
    assert out.shape == (3, 64, 64)
    expected = np.broadcast_to((np.array([200, 100, 50]) / 255)[:, None, None], (3, 32, 64))
    np.testing.assert_allclose(out[:, 16:48, :], expected, atol=1e-6)
    assert not out[:, :16].any() and not out[:, 48:].any()


def test_pad_tall_image_hand_computed() -> None:
    # H=100, W=50 into 64: 64 x 32, left (64 - 32) // 2 = 16
    out, geom = Resize(64, mode="pad").image(_const(100, 50))
    assert geom.content_box == (0, 16, 64, 32)
    assert not out[:, :, :16].any() and not out[:, :, 48:].any()
    assert out[:, :, 16:48].min() > 0


def test_pad_odd_margins_and_rect_input() -> None:
    # H=30, W=100 into (64, 96): scale min(64/30, 96/100) = 0.96 -> 29 x 96, top (64 - 29) // 2 = 17
    _, geom = Resize((64, 96), mode="pad").image(_const(30, 100))
    assert geom.content_box == (17, 0, 29, 96)


def test_pad_square_image_fills() -> None:
    _, geom = Resize(64, mode="pad").image(_const(80, 80))
    assert geom.content_box == (0, 0, 64, 64)


def test_shrinking_uses_area_interpolation() -> None:
    img = np.zeros((128, 128, 3), np.uint8)
    img[0, 0] = 255  # one bright pixel; area averaging keeps 255/16, linear sampling would miss it
    out, _ = Resize(32).image(img)
    assert out[0, 0, 0] == pytest.approx(16 / 255, abs=1.5 / 255)


def test_same_size_is_exact() -> None:
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out, _ = Resize(64).image(img)
    np.testing.assert_allclose(out, img.transpose(2, 0, 1) / 255, atol=1e-6)


def test_image_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Resize(64).image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        Resize(64).image(np.zeros((10, 10, 3), np.float32))


# --- masks ----------------------------------------------------------------------------------------


def test_mask_pad_same_geometry_as_image() -> None:
    m = np.zeros((50, 100), bool)
    m[10:40, 20:80] = True
    out = Resize(64, mode="pad").mask(m)
    assert out.dtype == bool and out.shape == (64, 64)
    # content rows 16..47 (scale 0.64): defect rows 10..39 -> 6.4..25.6 -> 22..41, cols 12.8..51.2
    assert not out[:16].any() and not out[48:].any()
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert rows[0] in (22, 23) and rows[-1] in (41, 42)
    assert cols[0] in (12, 13) and cols[-1] in (50, 51)


def test_mask_nearest_upscale_is_exact_blocks() -> None:
    m = np.zeros((32, 32), bool)
    m[3, 5] = True
    out = Resize(64).mask(m)
    expected = np.zeros((64, 64), bool)
    expected[6:8, 10:12] = True
    np.testing.assert_array_equal(out, expected)


def test_mask_nearest_no_interpolated_values() -> None:
    m = np.random.default_rng(2).random((90, 70)) > 0.5
    out = Resize(64).mask(m)
    assert out.dtype == bool and out.shape == (64, 64)
    assert 0.3 < out.mean() < 0.7


def test_mask_all_false_stays_false() -> None:
    assert not Resize(64, mode="pad").mask(np.zeros((20, 90), bool)).any()


# --- geometry -------------------------------------------------------------------------------------


def test_to_original_round_trip_shape() -> None:
    _, geom = Resize(64, mode="pad").image(_const(50, 100))
    amap = np.zeros((64, 64), np.float32)
    amap[16:48] = 0.7  # content only; padding 0
    back = geom.to_original(amap)
    assert back.shape == (50, 100) and back.dtype == np.float32
    np.testing.assert_allclose(back, 0.7, atol=1e-6)


def test_to_original_squash_and_leading_axes_and_torch() -> None:
    _, geom = Resize(64).image(_const(30, 90))
    amap = torch.rand(1, 1, 64, 64)
    back = geom.to_original(amap)
    assert back.shape == (30, 90) and back.dtype == np.float32


def test_to_original_other_resolution_uses_input_size() -> None:
    _, geom = Resize(64, mode="pad").image(_const(50, 100))
    back = geom.to_original(np.full((16, 16), 2.0, np.float32))
    assert back.shape == (50, 100)
    np.testing.assert_allclose(back, 2.0, atol=1e-5)


def test_to_original_rejects_bad_maps() -> None:
    geom = Geometry((50, 100), (16, 0, 32, 64))  # no input size known
    with pytest.raises(ValueError, match="2-D"):
        geom.to_original(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError, match="content box"):
        geom.to_original(np.zeros((32, 32)))


def test_crop_content() -> None:
    geom = Geometry((50, 100), (16, 0, 32, 64), (64, 64))
    assert geom.crop_content(np.zeros((3, 64, 64))).shape == (3, 32, 64)
    assert geom.crop_content(torch.zeros(2, 64, 64)).shape == (2, 32, 64)


def test_geometry_dict_round_trip() -> None:
    _, geom = Resize((64, 96), mode="pad").image(_const(50, 100))
    again = Geometry.from_dict(json.loads(json.dumps(geom.to_dict())))
    assert again == geom
    assert Geometry.from_dict({"original_size": [5, 6], "content_box": [0, 0, 64, 64]}).input_size is None
    with pytest.raises(ConfigError, match="original_size"):
        Geometry.from_dict({"content_box": [0, 0, 1, 1]})


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 0, -64, 31, (64,), (64, 16), 64.0, "64", True, None, (64, 64, 3)])
def test_bad_size(size) -> None:
    with pytest.raises(ConfigError, match="resize size") as info:
        Resize(size)
    assert repr(size) in str(info.value)


def test_bad_mode() -> None:
    with pytest.raises(ConfigError, match=r"resize mode must be one of \['pad', 'squash'\], got 'crop'"):
        Resize(64, mode="crop")


def test_good_sizes() -> None:
    assert Resize(32).size == (32, 32)
    assert Resize((32, 48)).size == (32, 48)
    assert Resize([np.int64(64), 40]).size == (64, 40)
    assert Resize(64) == Resize((64, 64), "squash")
