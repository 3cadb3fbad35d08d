"""Real data from ../shared/data: minimum accuracy on the magnetic-tile defect set (MTD).

The default run keeps one small real-data test (PaDiM at 128 px); the full-size checks are `-m slow`.
Every test skips with a message when the shared data is absent.
"""

from __future__ import annotations

import pytest

from defectlens import load_mvtec
from defectlens.engine import score_records
from defectlens.models import create


def evaluate(detector, splits) -> dict:
    return score_records(detector, splits.test).evaluate(detector.calibration_.threshold.value_)


@pytest.mark.realdata
def test_padim_small_images_on_magnetic_tile(magnetic_tile):
    splits = load_mvtec(magnetic_tile)
    assert len(splits.test) == 582 and splits.has_masks
    result = evaluate(create("padim", image_size=128, device="cpu").fit(splits), splits)
    assert result["image_auroc"] >= 0.90
    assert result["pixel_auroc"] >= 0.70


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "image_auroc", "pixel_auroc"), [("patchcore", 0.95, 0.80), ("padim", 0.93, 0.70)]
)
def test_full_size_on_magnetic_tile(magnetic_tile, model, image_auroc, pixel_auroc):
    splits = load_mvtec(magnetic_tile)
    result = evaluate(create(model, device="cpu").fit(splits), splits)
    assert result["image_auroc"] >= image_auroc
    assert result["pixel_auroc"] >= pixel_auroc
