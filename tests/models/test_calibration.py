"""Calibration on scores of images the model did not see: out of fold, held out, or a validation folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from defectlens.data import load_mvtec
from defectlens.models import load
from defectlens.models.cross_fit import assign_folds


def test_duplicates_share_a_fold_and_folds_are_balanced():
    digests = [b"a", b"b", b"a", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"a"]
    folds = assign_folds(digests, folds=5, seed=0)
    assert folds[0] == folds[2] == folds[10]
    assert sorted(np.bincount([folds[i] for i in (0, 1, 3, 4, 5, 6, 7, 8, 9)])) == [1, 2, 2, 2, 2]


def test_too_few_distinct_images_are_refused():
    from defectlens.errors import DataError

    with pytest.raises(DataError, match="at least 2 distinct good images, got 1 \\(in 3 images\\)"):
        assign_folds([b"x", b"x", b"x"], folds=5, seed=0)


@pytest.mark.parametrize(
    ("name", "params", "source"),
    [
        ("patchcore", {}, "leave-image-out (17 images)"),
        ("patchcore", {"out_of_fold": "folds"}, "out-of-fold (5 folds of 17 images)"),
        ("padim", {}, "leave-image-out (17 images)"),
        ("padim", {"out_of_fold": "folds"}, "out-of-fold (5 folds of 17 images)"),
    ],
)
def test_a_duplicated_training_image_gets_no_free_pass(name, params, source, quick, make_texture):
    """Its copy is left out with it, so its out-of-fold score is that of an unseen image, not ~0."""
    images = [make_texture(i) for i in range(15)]
    odd = make_texture(99)
    odd[20:40, 30:60] = 255  # unlike every other image: unseen, it scores high
    train = [*images, odd, odd.copy()]
    detector = quick(name, **params).fit(train)
    oof = detector.calibration_.good_scores  # in training order
    in_sample = detector.score_batch(torch.from_numpy(_resized(detector, odd)))[0][0]
    assert oof[15] == pytest.approx(oof[16])
    assert oof[15] > np.median(oof[:15]) and oof[15] > 2 * in_sample
    assert detector.calibration_.source == source


def test_padim_leave_image_out_equals_a_refit_without_the_image(quick, make_texture):
    """The closed-form downdate gives the score of the image under Gaussians fitted without it."""
    images = [make_texture(i) for i in range(12)]
    left_out = quick("padim").fit(images).calibration_.good_scores
    for j in (0, 7):
        refit = quick("padim").fit(images[:j] + images[j + 1 :])
        assert left_out[j] == pytest.approx(refit.predict(images[j]).raw_score[0], rel=1e-3)


def _resized(detector, image):
    resized, _ = detector.input_resize.image(image)
    return resized[None]


def test_out_of_fold_detectors_calibrate_on_every_good_image(tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("padim").fit(splits)
    point = detector.calibration_.operating_point()
    assert point["n_good"] == len(splits.train) + len(splits.val) == 16
    assert point["scores_from"] == "leave-image-out (16 images)"
    assert point["policy"] == "false_reject_rate" and point["rate"] == 0.01
    assert point["method"] == "exponential tail"  # 16 scores cannot show 1 %
    assert point["guaranteed_false_reject_rate"] == pytest.approx(1 - 0.05 ** (1 / 16))


def test_held_out_detectors_keep_a_split(tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("autoencoder", max_epochs=2).fit(splits)
    point = detector.calibration_.operating_point()
    assert point["n_good"] == len(splits.val) == 4
    assert point["scores_from"] == "held-out split (10% of the good images)"
    assert point["method"] == "maximum"


@pytest.mark.parametrize("name", ["autoencoder", "stfpm"])
def test_trained_detectors_refit_in_folds_when_few_images_are_held_out(name, tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick(name, max_epochs=2, calibration_refits=4).fit(splits)
    point = detector.calibration_.operating_point()
    assert point["scores_from"] == "out-of-fold refits (4 folds of 16 images)" and point["n_good"] == 16
    shipped = quick(name, max_epochs=2).fit(splits)  # the same split and seed, calibrated on the split
    np.testing.assert_allclose(
        detector.predict(splits.test).raw_score, shipped.predict(splits.test).raw_score, rtol=1e-5
    )


def test_calibration_refits_must_be_zero_or_several(quick):
    from defectlens.errors import ConfigError

    with pytest.raises(
        ConfigError, match="calibration_refits must be 0 \\(keep the held-out split\\) or at least 2"
    ):
        quick("autoencoder", calibration_refits=1).check_params()


def test_a_validation_folder_takes_precedence(tiny_mvtec, tmp_path, quick):
    root = tmp_path / "data"
    shutil.copytree(tiny_mvtec, root)
    (root / "val" / "good").mkdir(parents=True)
    (root / "val" / "scratch").mkdir()
    for path in sorted((root / "train" / "good").iterdir())[:6]:
        shutil.move(path, root / "val" / "good" / path.name)
    for path in sorted((root / "test" / "scratch").iterdir())[:2]:
        shutil.copy(path, root / "val" / "scratch" / path.name)
    splits = load_mvtec(root)
    assert not splits.val_carved
    detector = quick("patchcore", threshold_policy="recall", recall=1.0).fit(splits)
    point = detector.calibration_.operating_point()
    assert point["scores_from"] == "validation folder" and point["n_good"] == 6
    assert point["n_defective"] == 2 and point["calibration_recall"] == 1.0
    assert point["threshold"] == pytest.approx(detector.calibration_.defective_scores.min())


def test_few_images_say_the_rate_cannot_be_shown(quick, caplog, make_texture):
    with caplog.at_level("WARNING"):
        quick("padim").fit([make_texture(i) for i in range(12)])
    assert "12 good scores cannot show a false-reject rate of 0.01" in caplog.text


def test_a_checkpoint_of_the_old_calibration_still_loads(tiny_mvtec, tmp_path, quick, caplog):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("padim").fit(splits)
    path = detector.save(tmp_path / "new.pt")
    checkpoint = torch.load(path, weights_only=True)
    for key in ("threshold_policy", "false_reject_rate", "recall", "calibration_folds", "out_of_fold"):
        del checkpoint["params"][key]
    del checkpoint["kind"]  # old checkpoints did not record it
    post = checkpoint["post"]
    for key in ("source", "defective_scores"):
        del post[key]
    post["threshold"] = {"kind": "quantile", "q": 0.99, "value": 3.5}
    torch.save(checkpoint, tmp_path / "old.pt")
    with caplog.at_level("WARNING"):
        old = load(tmp_path / "old.pt")
    assert old.calibration_.image_threshold == 3.5 and old.calibration_.threshold.kind == "quantile"
    assert "fit it again for held-out or out-of-fold calibration" in caplog.text
    np.testing.assert_allclose(old.predict(splits.test).raw_score, detector.predict(splits.test).raw_score)
