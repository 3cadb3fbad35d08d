"""Report pictures stay small for large images, with full-resolution pictures of the strongest boxes."""

from __future__ import annotations

import numpy as np
from PIL import Image

from defectlens.data import Record
from defectlens.data.datasets import DataSplits
from defectlens.data.transforms import Resize
from defectlens.engine.predict import describe
from defectlens.engine.runs import THUMBNAIL_SIDE
from defectlens.engine.test import PANEL_SIDE, write_overlay_thumbnail, write_panel
from defectlens.engine.train import resolution_hint
from defectlens.models import create
from defectlens.post.prediction import Prediction


def test_a_large_image_gets_a_bounded_panel_and_box_crops_at_full_resolution(tmp_path):
    height, width = 1500, 2100
    image = np.full((height, width, 3), 90, np.uint8)
    amap = np.zeros((1, 256, 256), np.float32)
    amap[0, 100:110, 40:52] = 1.0  # one strong region
    amap[0, 200:204, 200:204] = 0.8  # and a weaker one
    geometry = Resize(256, "squash").geometry((height, width))
    prediction = Prediction(
        np.array([0.9]), amap, np.array([0.9]), amap, np.array([True]), amap >= 0.5, [geometry]
    )
    mask_path = tmp_path / "mask.png"
    Image.fromarray(np.zeros((height, width), np.uint8)).save(mask_path)
    record = Record(tmp_path / "part.png", 1, "scratch", mask_path)
    _, heat, found = describe("part.png", prediction, 0, "detection")
    write_panel(tmp_path / "part.png", record, image, prediction, 0, heat, found)
    picture = np.asarray(Image.open(tmp_path / "part.png"))
    assert picture.shape[1] <= PANEL_SIDE and picture.shape[0] <= PANEL_SIDE  # strip included
    strongest = np.asarray(Image.open(tmp_path / "part.box1.png"))
    # region rows 100-110 of 256 -> about 59 px of 1500, plus a 32-px margin each side, at full resolution
    assert 100 <= strongest.shape[0] <= 200 and (tmp_path / "part.box2.png").is_file()
    assert not (tmp_path / "part.box3.png").exists()


def test_the_review_card_overlay_fits_the_thumbnail_side_with_its_boxes(tmp_path):
    image = np.full((300, 600, 3), 90, np.uint8)
    heat = np.zeros((300, 600), np.float32)
    heat[100:140, 200:300] = 0.9
    path = write_overlay_thumbnail(tmp_path / "card.jpg", image, heat, [(200, 100, 300, 140, 0.9)])
    card = np.asarray(Image.open(path)).astype(int)
    assert card.shape == (THUMBNAIL_SIDE // 2, THUMBNAIL_SIDE, 3)
    yellow = (card[..., 0] > 200) & (card[..., 1] > 200) & (card[..., 2] < 80)  # JPEG: near (255, 255, 0)
    # the box, shrunk with the image: x 200-300 of 600 -> 64-96 of 192
    assert yellow[:, 64].sum() >= 10 and yellow[:, 96:].sum() < yellow[:, 64:96].sum()
    small = write_overlay_thumbnail(tmp_path / "small.jpg", image[:50, :80], heat[:50, :80], [])
    assert np.asarray(Image.open(small)).shape == (50, 80, 3)  # small images keep their size


def test_resolution_hint_for_images_much_larger_than_the_model_input(tmp_path):
    paths = []
    for i, side in enumerate((1024, 1024, 1100)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.zeros((side, side), np.uint8)).save(paths[-1])
    splits = DataSplits([Record(p, 0, "good") for p in paths], [], [])
    hint = resolution_hint(create("patchcore"), splits, {})
    assert hint is not None and "1024x1024" in hint
    assert "--image-size 512," in hint and "--image-size 1024 --tile-size 256" in hint
    assert resolution_hint(create("patchcore", image_size=256), splits, {"image_size": 256}) is None
    assert resolution_hint(create("patchcore", image_size=1024, tile_size=256), splits, {}) is None
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "small.png")
    small = DataSplits([Record(tmp_path / "small.png", 0, "good")], [], [])
    assert resolution_hint(create("patchcore"), small, {}) is None
