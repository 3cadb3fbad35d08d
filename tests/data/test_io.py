from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectlens.data.io import IMAGE_SUFFIXES, check_readable, list_images, read_image, read_mask, read_size
from defectlens.errors import DataError

H, W = 5, 7  # non-square everywhere


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[:, :, None], 3, axis=2)


def _check(out: np.ndarray, shape: tuple[int, int] = (H, W)) -> None:
    assert out.dtype == np.uint8
    assert out.shape == (*shape, 3)
    assert out.flags["C_CONTIGUOUS"]


@pytest.fixture
def gray8() -> np.ndarray:
    return (np.arange(H * W, dtype=np.uint8) * 7).reshape(H, W)


def test_suffixes() -> None:
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def test_rgb_png(tmp_path: Path, save_image, rgb) -> None:
    a = rgb(H, W)
    out = read_image(save_image(tmp_path / "x.png", a))
    _check(out)
    np.testing.assert_array_equal(out, a)


def test_gray_l(tmp_path: Path, save_image, gray8) -> None:
    out = read_image(save_image(tmp_path / "x.png", gray8))
    _check(out)
    np.testing.assert_array_equal(out, _gray(gray8))


def test_rgba_drops_alpha(tmp_path: Path, save_image, rgb) -> None:
    a = rgb(H, W)
    rgba = np.dstack([a, np.full((H, W), 10, np.uint8)])
    out = read_image(save_image(tmp_path / "x.png", rgba))
    _check(out)
    np.testing.assert_array_equal(out, a)


def test_la_drops_alpha(tmp_path: Path, gray8) -> None:
    img = Image.merge("LA", [Image.fromarray(gray8), Image.new("L", (W, H), 0)])
    img.save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    _check(out)
    np.testing.assert_array_equal(out, _gray(gray8))


def test_bilevel_1(tmp_path: Path) -> None:
    bits = np.zeros((H, W), bool)
    bits[1, 2] = True
    Image.fromarray(bits).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == "1"
    out = read_image(tmp_path / "x.png")
    _check(out)
    assert out[1, 2].tolist() == [255, 255, 255]
    assert out.sum() == 3 * 255


@pytest.mark.parametrize("transparency", [False, True])
def test_palette(tmp_path: Path, transparency: bool) -> None:
    img = Image.new("P", (W, H), 0)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putpixel((3, 2), 1)
    kwargs = {"transparency": 0} if transparency else {}
    img.save(tmp_path / "x.png", **kwargs)
    reread = Image.open(tmp_path / "x.png")
    assert reread.mode == "P"
    assert ("transparency" in reread.info) == transparency
    out = read_image(tmp_path / "x.png")
    _check(out)
    assert out[0, 0].tolist() == [10, 20, 30]  # transparent pixels keep their palette colour
    assert out[2, 3].tolist() == [200, 100, 50]


def test_uint16_png_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.zeros((H, W), np.uint16)
    a[0, :4] = [0, 32768, 65535, 257]
    Image.fromarray(a).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == "I;16"
    out = read_image(tmp_path / "x.png")
    _check(out)
    assert out[0, :4, 0].tolist() == [0, 128, 255, 1]


def test_uint16_big_endian_tiff(tmp_path: Path) -> None:
    a = np.zeros((H, W), ">u2")
    a[0, :3] = [0, 32768, 65535]
    Image.frombytes("I;16B", (W, H), a.tobytes()).save(tmp_path / "x.tiff")
    assert Image.open(tmp_path / "x.tiff").mode == "I;16B"
    out = read_image(tmp_path / "x.tiff")
    _check(out)
    assert out[0, :3, 1].tolist() == [0, 128, 255]


def test_int32_tiff(tmp_path: Path) -> None:
    a = np.zeros((H, W), np.int32)
    a[0, :3] = [0, 2**30, 2**31 - 1]
    Image.fromarray(a).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == "I"
    out = read_image(tmp_path / "x.tif")
    _check(out)
    assert out[0, :3, 2].tolist() == [0, 128, 255]


def test_int32_holding_16bit_values(tmp_path: Path) -> None:
    a = np.zeros((H, W), np.int32)
    a[0, :2] = [32768, 65535]
    Image.fromarray(a).save(tmp_path / "x.tif")
    out = read_image(tmp_path / "x.tif")
    assert out[0, :2, 0].tolist() == [128, 255]


def test_float_f(tmp_path: Path) -> None:
    a = np.zeros((H, W), np.float32)
    a[0, :3] = [0.0, 0.5, 1.0]
    Image.fromarray(a).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == "F"
    out = read_image(tmp_path / "x.tif")
    _check(out)
    assert out[0, :3, 0].tolist() == [0, 128, 255]


def test_float_out_of_unit_range_is_stretched(tmp_path: Path) -> None:
    a = np.full((H, W), -2.0, np.float32)
    a[0, 0] = 6.0
    Image.fromarray(a).save(tmp_path / "x.tif")
    out = read_image(tmp_path / "x.tif")
    assert out[0, 0, 0] == 255
    assert out[1, 1, 0] == 0


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(tmp_path / "x.jpg", quality=100)
    assert Image.open(tmp_path / "x.jpg").mode == "CMYK"
    out = read_image(tmp_path / "x.jpg")
    _check(out)
    assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 3


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_jpeg(tmp_path: Path, suffix: str) -> None:
    Image.new("RGB", (W * 4, H * 4), (200, 60, 20)).save(tmp_path / f"x{suffix}", quality=95)
    out = read_image(tmp_path / f"x{suffix}")
    _check(out, (H * 4, W * 4))
    assert np.abs(out.astype(int) - [200, 60, 20]).max() <= 4


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".webp"])
def test_lossless_formats(tmp_path: Path, rgb, suffix: str) -> None:
    a = rgb(H, W)
    kwargs = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(a).save(tmp_path / f"x{suffix}", **kwargs)
    out = read_image(tmp_path / f"x{suffix}")
    _check(out)
    np.testing.assert_array_equal(out, a)


def test_exif_orientation_applied(tmp_path: Path, rgb) -> None:
    a = rgb(H, W)
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(a).save(tmp_path / "x.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "x.jpg")
    _check(out, (W, H))
    assert read_size(tmp_path / "x.jpg") == (W, H)


def test_read_size(tmp_path: Path, save_image, rgb) -> None:
    assert read_size(save_image(tmp_path / "x.png", rgb(H, W))) == (H, W)


# --- failures -------------------------------------------------------------------------------------


def _unreadable(tmp_path: Path) -> dict[str, Path]:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png at all" * 10)
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (tmp_path / "a_dir.png").mkdir()
    return {
        "missing": tmp_path / "missing.png",
        "garbage": garbage,
        "truncated": truncated,
        "directory": tmp_path / "a_dir.png",
    }


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "directory"])
@pytest.mark.parametrize("reader", [read_image, read_mask])
def test_unreadable_raises_data_error_naming_path(tmp_path: Path, case: str, reader) -> None:
    path = _unreadable(tmp_path)[case]
    with pytest.raises(DataError, match="cannot read image") as info:
        reader(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("case", ["missing", "garbage", "directory"])
def test_check_readable_header(tmp_path: Path, case: str) -> None:
    path = _unreadable(tmp_path)[case]
    with pytest.raises(DataError, match="cannot read image") as info:
        check_readable(path)
    assert str(path) in str(info.value)


def test_check_readable_ok(tmp_path: Path, save_image, rgb) -> None:
    assert check_readable(save_image(tmp_path / "x.png", rgb(H, W))) is None


def test_missing_reason(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "nope.png")


# --- masks ----------------------------------------------------------------------------------------


def test_mask_l_binarised(tmp_path: Path, save_image) -> None:
    m = np.zeros((H, W), np.uint8)
    m[1, 1], m[2, 3], m[4, 6] = 255, 1, 128
    out = read_mask(save_image(tmp_path / "m.png", m))
    assert out.dtype == bool and out.shape == (H, W)
    np.testing.assert_array_equal(out, m > 0)


def test_mask_16bit(tmp_path: Path) -> None:
    m = np.zeros((H, W), np.uint16)
    m[0, 0], m[3, 3] = 65535, 1
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    np.testing.assert_array_equal(out, m > 0)


def test_mask_rgb_any_channel(tmp_path: Path, save_image) -> None:
    m = np.zeros((H, W, 3), np.uint8)
    m[0, 0] = [0, 0, 9]
    m[2, 2] = [255, 255, 255]
    out = read_mask(save_image(tmp_path / "m.png", m))
    assert out.shape == (H, W)
    assert out.sum() == 2 and out[0, 0] and out[2, 2]


def test_mask_rgba_ignores_alpha(tmp_path: Path, save_image) -> None:
    m = np.zeros((H, W, 4), np.uint8)
    m[..., 3] = 255
    m[1, 2, 0] = 255
    out = read_mask(save_image(tmp_path / "m.png", m))
    assert out.sum() == 1 and out[1, 2]


def test_mask_bilevel_and_palette(tmp_path: Path) -> None:
    bits = np.zeros((H, W), bool)
    bits[4, 0] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), bits)
    pal = Image.new("P", (W, H), 0)
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.putpixel((1, 3), 1)
    pal.save(tmp_path / "p.png")
    out = read_mask(tmp_path / "p.png")
    assert out.sum() == 1 and out[3, 1]


# --- listing --------------------------------------------------------------------------------------


def test_list_images(tmp_path: Path, save_image, rgb) -> None:
    for name in ("b.png", "a.JPG", "c.tiff", "d.jpeg", "e.BMP", "f.webp"):
        save_image(tmp_path / name, rgb(H, W))
    save_image(tmp_path / "sub" / "inner.png", rgb(H, W))  # not recursive
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "._b.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "dir.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.tiff", "d.jpeg", "e.BMP", "f.webp"]


def test_list_images_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match="does not exist") as info:
        list_images(missing)
    assert str(missing) in str(info.value)
    afile = tmp_path / "file.png"
    afile.write_bytes(b"x")
    with pytest.raises(DataError, match="not a directory") as info:
        list_images(afile)
    assert str(afile) in str(info.value)


def test_list_images_accepts_str(tmp_path: Path, save_image, rgb) -> None:
    save_image(tmp_path / "x.png", rgb(H, W))
    assert list_images(str(tmp_path)) == [tmp_path / "x.png"]
