"""Tests of defectlens.metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from defectlens.errors import ConfigError
from defectlens.metrics import aupro, evaluate, f1_at, f1_max, image_auroc, pixel_auroc

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


# ----------------------------------------------------------------------------------- image metrics
def test_image_auroc_by_hand():
    # (anomalous, normal) pairs: 0.35>0.1 win, 0.35<0.4 loss, 0.8>0.1 win, 0.8>0.4 win -> 3/4
    assert image_auroc(LABELS, SCORES) == pytest.approx(0.75)


def test_image_auroc_ties_count_half():
    # pairs: 0.5>0.2 win, 0.5==0.5 half, 0.9>0.2 win, 0.9>0.5 win -> 3.5/4
    assert image_auroc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875)


def test_image_auroc_accepts_bool_labels_and_perfect_scores():
    assert image_auroc(np.array([False, True, True]), np.array([0.0, 1.0, 2.0])) == pytest.approx(1.0)


def test_f1_max_by_hand():
    # t=0.8 : TP1 FP0 FN1 -> 2/3;  t=0.4 : TP1 FP1 FN1 -> 2/4
    # t=0.35: TP2 FP1 FN0 -> 4/5;  t=0.1 : TP2 FP2 FN0 -> 4/6   => best 0.8 at t=0.35
    best, thr = f1_max(LABELS, SCORES)
    assert best == pytest.approx(0.8)
    assert thr == pytest.approx(0.35)
    assert f1_at(LABELS, SCORES, thr) == pytest.approx(best)


def test_f1_max_with_tied_scores():
    # scores [0.3, 0.3, 0.9], labels [0, 1, 1]: t=0.9 -> TP1 FN1 -> 2/3; t=0.3 -> TP2 FP1 -> 4/5
    best, thr = f1_max([0, 1, 1], [0.3, 0.3, 0.9])
    assert (best, thr) == (pytest.approx(0.8), pytest.approx(0.3))


def test_f1_at_by_hand():
    # t=0.5: only 0.8 flagged -> TP1 FP0 FN1 -> 2/3
    assert f1_at(LABELS, SCORES, 0.5) == pytest.approx(2 / 3)
    # t=0.35 includes the score equal to it (>=) -> TP2 FP1 -> 4/5
    assert f1_at(LABELS, SCORES, 0.35) == pytest.approx(0.8)
    # t=0.0: all flagged -> TP2 FP2 -> 4/6
    assert f1_at(LABELS, SCORES, 0.0) == pytest.approx(2 / 3)
    # t=0.9: nothing flagged -> TP0 -> F1 0
    assert f1_at(LABELS, SCORES, 0.9) == 0.0


# ----------------------------------------------------------------------------------- pixel AUROC
def test_pixel_auroc_two_shapes_by_hand():
    masks = [np.array([[False, True], [False, False]]), np.array([[True, False, False]])]
    maps = [np.array([[0.1, 0.9], [0.3, 0.2]]), np.array([[0.3, 0.3, 0.05]])]
    # defect pixels 0.9, 0.3; normal pixels 0.1, 0.3, 0.2, 0.3, 0.05 (5) -> 10 pairs
    # 0.9 beats all 5 -> 5; 0.3 beats 0.1, 0.2, 0.05 (3) and ties 0.3, 0.3 (2 x 1/2) -> 4  => 9/10
    assert pixel_auroc(masks, maps) == pytest.approx(0.9)


# ------------------------------------------------------------------------------------------ AUPRO
def _two_region_case():
    """Two images, two regions of different sizes, 10 normal pixels.

    Image 1 (3x3): region R1 = {(0,0), (0,1)} (2 px, scores 0.9 and 0.5), 7 normal pixels.
    Image 2 (1x4): region R2 = {(0,1)} (1 px, score 0.8), 3 normal pixels, one also at 0.8 (tie).
    Per-pixel PRO steps: R1 pixel 1/(2*2) = 0.25, R2 pixel 1/(1*2) = 0.5; FPR step 1/10.
    Descending scores, last position of each tie kept:
        0.9 (R1)        -> (fpr 0.0, pro 0.25)
        0.8 (R2 + N)    -> (0.1, 0.75)
        0.6 (N)         -> (0.2, 0.75)
        0.5 (R1)        -> (0.2, 1.00)
        0.4 (N)         -> (0.3, 1.00)   ... then (1.0, 1.0)
    With (0, 0) prepended, areas: [0, 0.1] trapezoid 0.5*(0.25+0.75)*0.1 = 0.05,
    [0.1, 0.2] 0.75*0.1 = 0.075, [0.2, 0.3] 1.0*0.1 = 0.1.
    """
    mask1 = np.zeros((3, 3), dtype=bool)
    mask1[0, 0] = mask1[0, 1] = True
    map1 = np.array([[0.9, 0.5, 0.6], [0.4, 0.3, 0.2], [0.1, 0.05, 0.04]])
    mask2 = np.array([[False, True, False, False]])
    map2 = np.array([[0.8, 0.8, 0.03, 0.02]])
    return [mask1, mask2], [map1, map2]


def test_aupro_two_regions_by_hand():
    masks, maps = _two_region_case()
    # (0.05 + 0.075 + 0.1) / 0.3 = 0.75
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.75)
    # limit 1.0: 0.225 + 0.7 * 1.0 = 0.925
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.925)


def test_aupro_interpolates_at_limit():
    masks, maps = _two_region_case()
    # limit 0.05 lies on the sloped segment (0, 0.25)-(0.1, 0.75): PRO(0.05) = 0.5,
    # area 0.5*(0.25+0.5)*0.05 = 0.01875 -> / 0.05 = 0.375
    assert aupro(masks, maps, fpr_limit=0.05) == pytest.approx(0.375)
    # limit 0.25 lies on the flat segment (0.2, 1)-(0.3, 1): 0.05 + 0.075 + 0.05 = 0.175 -> / 0.25 = 0.7
    assert aupro(masks, maps, fpr_limit=0.25) == pytest.approx(0.7)


def test_aupro_perfect_and_inverted():
    masks, _ = _two_region_case()
    perfect = [m.astype(np.float32) for m in masks]
    inverted = [1.0 - p for p in perfect]
    # perfect: (0,0) -> (0,1) -> (1,1): area = limit
    assert aupro(masks, perfect) == pytest.approx(1.0)
    # inverted: every normal pixel comes first -> (1, 0), then (1, 1): PRO is 0 below FPR 1
    assert aupro(masks, inverted) == pytest.approx(0.0, abs=1e-12)


def test_aupro_diagonal_pixels_form_one_region():
    # 4x4 mask: (0,0) and (1,1) touch diagonally -> one region of 2 px; (3,3) is a second region.
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[3, 3] = True
    amap = np.full((4, 4), 0.5)
    amap[0, 0], amap[1, 1], amap[3, 3] = 0.9, 0.8, 0.1
    # 8-connected: steps 1/4, 1/4, 1/2 -> (0,0) (0,.25) (0,.5) (1,.5) (1,1): PRO is 0.5 up to FPR 1
    # (4-connected would give three regions, 1/3 each, and PRO 2/3).
    assert aupro([mask], [amap], fpr_limit=0.3) == pytest.approx(0.5)


def test_aupro_accepts_zero_one_integer_masks():
    masks, maps = _two_region_case()
    assert aupro([m.astype(np.uint8) for m in masks], maps) == pytest.approx(0.75)


def _slow_reference_aupro(masks, maps, fpr_limit, n_thresholds=4000):
    """Obvious version: loop over a fine grid of thresholds, then integrate up to the limit."""
    all_scores = np.concatenate([a.ravel() for a in maps])
    normal = np.concatenate([~m.ravel() for m in masks])
    regions = []
    for m, a in zip(masks, maps, strict=True):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [a[lab == k] for k in range(1, n + 1)]
    fprs, pros = [], []
    for t in np.linspace(all_scores.max() + 1e-6, all_scores.min() - 1e-6, n_thresholds):
        fprs.append(np.mean(all_scores[normal] >= t))
        pros.append(np.mean([np.mean(r >= t) for r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= fpr_limit
    x = np.append(fprs[keep], fpr_limit)
    y = np.append(pros[keep], np.interp(fpr_limit, fprs, pros))
    return np.trapezoid(y, x) / fpr_limit


@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_slow_reference_on_random_data(fpr_limit):
    rng = np.random.default_rng(0)
    masks, maps = [], []
    for h, w in [(20, 24), (16, 16), (30, 18), (12, 20)]:
        mask = np.zeros((h, w), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, h - 4), rng.integers(0, w - 4)
            mask[r : r + rng.integers(1, 5), c : c + rng.integers(1, 5)] = True
        masks.append(mask)
        maps.append(rng.normal(size=(h, w)) + 1.5 * mask)
    expected = _slow_reference_aupro(masks, maps, fpr_limit)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-2)


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("fn", [image_auroc, f1_max, lambda y, s: f1_at(y, s, 0.5)])
def test_image_metric_errors(fn):
    with pytest.raises(ConfigError, match="empty"):
        fn([], [])
    with pytest.raises(ConfigError, match="3 labels but 2 scores"):
        fn([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ConfigError, match="NaN or inf"):
        fn([0, 1], [0.1, np.nan])
    with pytest.raises(ConfigError, match="NaN or inf"):
        fn([0, 1], [np.inf, 0.1])
    with pytest.raises(ConfigError, match=r"labels of 0 \(normal\) or 1"):
        fn([0, 2], [0.1, 0.2])


def test_single_class_message():
    with pytest.raises(
        ConfigError, match=r"image_auroc needs both normal and anomalous samples, got only label 1 \(n=12\)"
    ):
        image_auroc([1] * 12, np.linspace(0, 1, 12))
    with pytest.raises(ConfigError, match=r"f1_max needs both .* got only label 0 \(n=3\)"):
        f1_max([0, 0, 0], [0.1, 0.2, 0.3])


def test_f1_at_rejects_nan_threshold():
    with pytest.raises(ConfigError, match="finite threshold"):
        f1_at(LABELS, SCORES, float("nan"))


@pytest.mark.parametrize("fn", [pixel_auroc, aupro])
def test_pixel_metric_input_errors(fn):
    masks, maps = _two_region_case()
    with pytest.raises(ConfigError, match="empty"):
        fn([], [])
    with pytest.raises(ConfigError, match="2 masks but 1 maps"):
        fn(masks, maps[:1])
    with pytest.raises(ConfigError, match=r"maps\[1\] has shape \(4, 1\) but masks\[1\] has shape \(1, 4\)"):
        fn(masks, [maps[0], maps[1].T])
    bad = [maps[0].copy(), maps[1]]
    bad[0][2, 2] = np.nan
    with pytest.raises(ConfigError, match=r"maps\[0\] has 1 NaN or inf"):
        fn(masks, bad)
    with pytest.raises(ConfigError, match=r"masks\[0\] must be bool"):
        fn([masks[0] * 255, masks[1]], maps)


def test_pixel_auroc_needs_defect_pixels():
    with pytest.raises(ConfigError, match="no defect pixels"):
        pixel_auroc([np.zeros((2, 2), bool)], [np.ones((2, 2))])


def test_aupro_needs_regions_and_normal_pixels():
    with pytest.raises(ConfigError, match="at least one defect region"):
        aupro([np.zeros((2, 2), bool)], [np.ones((2, 2))])
    with pytest.raises(ConfigError, match="every pixel is a defect"):
        aupro([np.ones((2, 2), bool)], [np.ones((2, 2))])


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5, float("nan")])
def test_aupro_rejects_bad_fpr_limit(limit):
    masks, maps = _two_region_case()
    with pytest.raises(ConfigError, match=r"fpr_limit in \(0, 1\]"):
        aupro(masks, maps, fpr_limit=limit)


# ---------------------------------------------------------------------------------------- evaluate
def test_evaluate_without_masks():
    res = evaluate(LABELS, SCORES, threshold=0.5)
    assert res == {
        "image_auroc": pytest.approx(0.75),
        "image_f1_max": pytest.approx(0.8),
        "image_f1_max_threshold": pytest.approx(0.35),
        "image_f1": pytest.approx(2 / 3),
        "threshold": 0.5,
        "pixel_auroc": None,
        "aupro": None,
        "pixel_note": "no ground-truth masks",
        "n_images": 4,
        "n_anomalous": 2,
    }


def test_evaluate_with_masks():
    masks, maps = _two_region_case()
    # image 1 anomalous (score 0.9), image 2 anomalous (0.8); add two defect-free normal images.
    masks = masks + [np.zeros((2, 2), bool), np.zeros((1, 3), bool)]
    maps = maps + [np.full((2, 2), -1.0), np.full((1, 3), -1.0)]
    res = evaluate([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], threshold=0.5, masks=masks, maps=maps, fpr_limit=0.3)
    # The 7 extra normal pixels score lowest: points (0, 0.25) (1/17, 0.75) (2/17, 0.75) (2/17, 1), so
    # area to 0.3 = 0.5*(0.25+0.75)/17 + 0.75/17 + (0.3 - 2/17) * 1.0
    expected_aupro = (0.5 / 17 + 0.75 / 17 + 0.3 - 2 / 17) / 0.3
    # pixel AUROC, 3 defect x 17 normal pairs: 0.9 (highest) beats all 17 -> 17;
    # 0.8 (R2) beats 16 and ties the normal 0.8 -> 16.5; 0.5 (R1) beats all but 0.8 and 0.6 -> 15
    expected_pixel_auroc = (17 + 16.5 + 15) / (3 * 17)
    assert res["image_auroc"] == pytest.approx(1.0)
    assert res["image_f1"] == pytest.approx(1.0)
    assert res["pixel_auroc"] == pytest.approx(expected_pixel_auroc)
    assert res["aupro"] == pytest.approx(expected_aupro)
    assert res["pixel_note"] is None
    assert (res["n_images"], res["n_anomalous"]) == (4, 2)


def test_evaluate_masks_without_defects_gives_none():
    masks = [np.zeros((2, 2), bool), np.zeros((1, 3), bool)]
    maps = [np.zeros((2, 2)), np.zeros((1, 3))]
    res = evaluate([0, 1], [0.1, 0.9], threshold=0.5, masks=masks, maps=maps)
    assert res["pixel_auroc"] is None and res["aupro"] is None
    assert res["pixel_note"] == "masks have no defect pixels"


def test_evaluate_errors():
    masks, maps = _two_region_case()
    with pytest.raises(ConfigError, match="masks but no maps"):
        evaluate([0, 1], [0.1, 0.9], 0.5, masks=masks)
    with pytest.raises(ConfigError, match="2 masks for 3 images"):
        evaluate([0, 1, 1], [0.1, 0.9, 0.8], 0.5, masks=masks, maps=maps)
    with pytest.raises(ConfigError, match=r"fpr_limit in \(0, 1\]"):
        evaluate([0, 1], [0.1, 0.9], 0.5, fpr_limit=2.0)
    with pytest.raises(ConfigError, match="evaluate needs both normal and anomalous"):
        evaluate([1, 1], [0.1, 0.9], 0.5)
