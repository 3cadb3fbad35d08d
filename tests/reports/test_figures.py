import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from defectlens.errors import ConfigError
from defectlens.reports.figures import (
    GT_COLOR,
    PRED_COLOR,
    encode_png,
    outline,
    overlay,
    panel,
    save_image,
    save_jpeg,
    save_roc_curve,
    save_score_histogram,
)

H, W = 64, 80
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    amap = np.zeros((H, W), np.float32)
    amap[20:40, 30:50] = 0.9
    gt = np.zeros((H, W), bool)
    gt[10:30, 10:30] = True
    pred = amap >= 0.5
    return image, amap, pred, gt


def test_overlay_shape_and_dtype(sample):
    image, amap, pred, gt = sample
    out = overlay(image, amap, pred, gt, boxes=[(30, 20, 50, 40, 0.9)])
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert not np.shares_memory(out, image)


def test_overlay_gt_contour_on_mask_edge(sample):
    image, amap, _, gt = sample
    out = overlay(image, amap, gt_mask=gt)
    green = np.all(out == GT_COLOR, axis=-1)
    assert green[10, 10:30].all() and green[29, 10:30].all()  # top and bottom edges
    assert green[10:30, 10].all() and green[10:30, 29].all()  # left and right edges
    assert not green[15:25, 15:25].any()  # not inside
    assert not green[40:, 40:].any()  # not elsewhere


def test_overlay_pred_contour_and_box(sample):
    image, amap, pred, _ = sample
    out = overlay(image, amap, pred_mask=pred)
    assert np.all(out[20, 30:50] == PRED_COLOR)
    boxed = overlay(image, amap, boxes=[(30, 20, 50, 40, 0.9)])
    assert np.all(boxed[39, 30:50] == (255, 255, 0))  # bottom edge at y1 - 1 (exclusive)
    assert np.all(boxed[20:40, 49] == (255, 255, 0))


def test_overlay_fixed_colour_scale():
    image = np.zeros((4, 4, 3), np.uint8)
    a = overlay(image, np.full((4, 4), 0.5), alpha=1.0)
    b = overlay(image, np.r_[np.full(8, 0.5), np.full(8, 0.1)].reshape(4, 4), alpha=1.0)
    np.testing.assert_array_equal(a[0, 0], b[0, 0])  # 0.5 has one colour whatever else is in the map
    low, high = overlay(image, np.zeros((4, 4)), alpha=1.0), overlay(image, np.ones((4, 4)), alpha=1.0)
    assert low[0, 0, 2] > low[0, 0, 0] and high[0, 0, 0] > high[0, 0, 2]  # blue = normal, red = anomalous


def test_overlay_errors(sample):
    image, amap, _, _ = sample
    with pytest.raises(ConfigError, match="anomaly_map"):
        overlay(image, amap[:10])
    with pytest.raises(ConfigError, match="uint8"):
        overlay(image.astype(np.float32), amap)
    with pytest.raises(ConfigError, match="alpha"):
        overlay(image, amap, alpha=1.5)


def test_panel_shapes(sample):
    image, amap, pred, gt = sample
    with_gt = panel(image, amap, pred, gt, title="bottle / broken_large 003")
    assert with_gt.dtype == np.uint8 and with_gt.ndim == 3 and with_gt.shape[2] == 3
    assert with_gt.shape[1] == 3 * W and with_gt.shape[0] > H
    strip = with_gt.shape[0] - H
    np.testing.assert_array_equal(with_gt[strip:, :W], image)
    assert (with_gt[:strip] < 128).any()  # title text drawn
    without_gt = panel(image, amap, title="")
    assert without_gt.shape == (H + strip, 2 * W, 3)


def test_save_roc_curve(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(50, int), np.ones(20, int)]
    scores = np.r_[rng.normal(0, 1, 50), rng.normal(2, 1, 20)]
    p = save_roc_curve(labels, scores, tmp_path / "sub" / "roc.png", title="ROC")
    assert p.exists() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ConfigError, match="good \\(0\\) and defective \\(1\\)"):
        save_roc_curve(np.zeros(5), np.arange(5), tmp_path / "bad.png")
    assert plt.get_fignums() == []


def test_save_score_histogram(tmp_path):
    labels = np.r_[np.zeros(30, int), np.ones(10, int)]
    scores = np.r_[np.linspace(0, 1, 30), np.linspace(0.8, 2, 10)]
    p = save_score_histogram(labels, scores, 0.9, tmp_path / "a" / "hist.png", title="h")
    assert p.exists() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG_MAGIC
    # one class only and constant scores still work
    q = save_score_histogram(np.zeros(5, int), np.ones(5), 1.0, tmp_path / "const.png")
    assert q.stat().st_size > 1000
    assert plt.get_fignums() == []


def test_no_figure_leak(tmp_path):
    before = plt.get_fignums()
    labels = np.r_[np.zeros(5, int), np.ones(5, int)]
    scores = np.arange(10.0)
    for i in range(10):
        save_roc_curve(labels, scores, tmp_path / f"roc{i}.png")
        save_score_histogram(labels, scores, 4.5, tmp_path / f"hist{i}.png")
    assert plt.get_fignums() == before == []


def test_save_image(tmp_path, sample):
    image, _, _, gt = sample
    p = save_image(image, tmp_path / "x" / "y" / "img.png")
    np.testing.assert_array_equal(np.asarray(Image.open(p)), image)
    m = save_image(gt, tmp_path / "mask.png")
    back = np.asarray(Image.open(m))
    assert back.shape == (H, W) and set(np.unique(back).tolist()) == {0, 255}
    with pytest.raises(ConfigError, match="uint8"):
        save_image(image.astype(np.float32), tmp_path / "f.png")


def test_outline_lays_the_ground_truth_edge_over_a_transparent_picture(sample):
    image, amap, _, gt = sample
    layer = outline(gt)
    assert layer.shape == (H, W, 4) and layer.dtype == np.uint8
    drawn = layer[..., 3] > 0
    # the same pixels, in the same colour, as the ground-truth outline of `overlay`
    np.testing.assert_array_equal(drawn, np.all(overlay(image, amap, gt_mask=gt) == GT_COLOR, axis=-1))
    assert np.all(layer[drawn][:, :3] == GT_COLOR) and not layer[~drawn].any()
    back = np.asarray(Image.open(io.BytesIO(encode_png(layer))))
    np.testing.assert_array_equal(back, layer)


def test_save_jpeg(tmp_path, sample):
    image, _, _, gt = sample
    back = np.asarray(Image.open(save_jpeg(image, tmp_path / "x" / "img.jpg"))).astype(int)
    assert back.shape == (H, W, 3) and np.abs(back - image).mean() < 20  # lossy, but the same picture
    assert np.asarray(Image.open(save_jpeg(image[..., 0], tmp_path / "grey.jpg"))).shape == (H, W, 3)
    with pytest.raises(ConfigError, match="quality must be in"):
        save_jpeg(image, tmp_path / "q.jpg", quality=0)
    with pytest.raises(ConfigError, match="uint8"):
        save_jpeg(gt, tmp_path / "mask.jpg")
