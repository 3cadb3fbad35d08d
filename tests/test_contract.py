"""One suite every registered detector must pass (in the spirit of sklearn's estimator checks)."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.data import load_mvtec
from defectlens.errors import CheckpointError, ConfigError, NotFittedError
from defectlens.models import create, list_detectors, load

SMALL = {"image_size": 64, "batch_size": 4, "device": "cpu"}


@pytest.fixture(scope="module", params=list_detectors())
def fitted(request, tiny_mvtec, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick(request.param)
    return detector, detector.fit(splits), splits


def test_constructor_only_stores_params(fitted):
    detector, _, _ = fitted
    fresh = type(detector)(**SMALL)
    assert set(vars(fresh)) == set(fresh.param_names())
    assert create(detector.name, **fresh.get_params()).get_params() == fresh.get_params()


def test_fit_returns_self_and_predict_shapes(fitted):
    detector, returned, splits = fitted
    assert returned is detector
    prediction = detector.predict(splits.test)
    n = len(splits.test)
    assert prediction.raw_score.shape == prediction.score.shape == prediction.label.shape == (n,)
    assert prediction.anomaly_map.shape == prediction.mask.shape == (n, 64, 64)
    assert np.isfinite(prediction.raw_score).all()
    assert ((prediction.score >= 0) & (prediction.score <= 1)).all()
    np.testing.assert_array_equal(prediction.label, prediction.score >= 0.5)


def test_scratches_score_higher_than_good(fitted):
    detector, _, splits = fitted
    prediction = detector.predict(splits.test)
    labels = np.array([r.label for r in splits.test])
    assert prediction.raw_score[labels == 1].min() > prediction.raw_score[labels == 0].max()


def test_threshold_maps_to_one_half(fitted):
    detector, _, _ = fitted
    assert detector.calibration_.normalizer.transform(np.array([detector.calibration_.threshold.value_]))[
        0
    ] == pytest.approx(0.5)


def test_save_load_round_trip_gives_identical_scores(fitted, tmp_path):
    detector, _, splits = fitted
    path = detector.save(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="exists"):
        detector.save(path)
    restored = load(path)
    assert type(restored) is type(detector) and restored.get_params() == detector.get_params()
    before, after = detector.predict(splits.test), restored.predict(splits.test)
    np.testing.assert_allclose(after.raw_score, before.raw_score, rtol=1e-6)
    np.testing.assert_allclose(after.score, before.score, rtol=1e-6)
    np.testing.assert_allclose(after.raw_map, before.raw_map, rtol=1e-5, atol=1e-6)


def test_predict_accepts_arrays_and_paths(fitted):
    detector, _, splits = fitted
    from defectlens.data import read_image

    path = splits.test[0].path
    by_path = detector.predict([path])
    by_array = detector.predict(read_image(path))
    np.testing.assert_allclose(by_array.raw_score, by_path.raw_score, rtol=1e-5)


@pytest.mark.parametrize("name", list_detectors())
def test_predict_before_fit_names_the_class(name):
    detector = create(name)
    with pytest.raises(NotFittedError, match=type(detector).__name__):
        detector.predict(np.zeros((32, 32, 3), np.uint8))


@pytest.mark.parametrize("name", list_detectors())
def test_bad_setting_fails_in_fit_with_its_name(name, tiny_mvtec):
    detector = create(name, image_size=8)
    with pytest.raises(ConfigError, match="image_size"):
        detector.fit(load_mvtec(tiny_mvtec))


def test_unknown_model_and_setting_list_the_valid_ones():
    with pytest.raises(ConfigError, match="available models: .*padim.*patchcore"):
        create("patchcorr")
    with pytest.raises(ConfigError, match="has no setting \\['coreset'\\]"):
        create("patchcore", coreset=0.1)


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "none.pt")
    import torch

    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a defectlens checkpoint"):
        load(tmp_path / "other.pt")


def test_load_names_the_file_when_weights_do_not_fit_the_settings(fitted, tmp_path):
    import torch

    detector, _, _ = fitted
    checkpoint = torch.load(detector.save(tmp_path / "model.pt"), weights_only=True)
    name, weight = next(detector.module_.named_parameters())  # shaped by the settings, not by the data
    checkpoint["state_dict"][name] = torch.zeros(*weight.shape, 2)  # one more dimension than saved
    torch.save(checkpoint, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt: the saved weights do not fit"):
        load(tmp_path / "edited.pt")


def test_complexity_of_the_shaped_module_matches_a_fitted_one(fitted, quick):
    from defectlens.models.complexity import measure

    detector, _, splits = fitted
    shaped = quick(detector.name)._shaped_module(len(splits.train))
    real, estimate = measure(detector.module_, (64, 64)), measure(shaped, (64, 64))
    assert estimate.parameters == real.parameters
    assert estimate.gflops == pytest.approx(real.gflops, rel=0.2)  # the memory bank size depends on rounding
