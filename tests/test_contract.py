"""One suite every registered detector must pass (in the spirit of sklearn's estimator checks).

It also shows that a detector takes one class in one file: `MeanImage` below is defined here alone, and
the suite, `create`, `load`, `defectlens models` and the exporter accept it like the built-in ones.
"""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from defectlens.core.estimator import setting
from defectlens.data import load_mvtec
from defectlens.errors import CheckpointError, ConfigError, NotFittedError
from defectlens.models import Detector, create, list_detectors, load, register
from defectlens.models.smoothing import gaussian_blur

SMALL = {"image_size": 64, "batch_size": 4, "device": "cpu"}


class MeanImageModel(nn.Module):
    """Score map: per-pixel distance to the mean good image, blurred; image score: its maximum."""

    def __init__(self, mean: torch.Tensor, blur_sigma: float) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.blur_sigma = blur_sigma

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = gaussian_blur((images - self.mean).abs().mean(1), self.blur_sigma)
        return maps.flatten(1).amax(1), maps


@register("test-mean-image")
class MeanImage(Detector):
    """The smallest detector there is: the distance of each pixel to the mean good image.

    Args:
        blur_sigma: Gaussian smoothing of the map in pixels (1 here).
    """

    blur_sigma: float = setting(1.0)

    def _fit_module(self, train, val, context) -> nn.Module:
        images = torch.cat([batch.images for batch in train])
        return MeanImageModel(images.mean(0), self.blur_sigma).to(context.device)

    def _build_module(self, state) -> nn.Module:
        return self._shaped_module(0)

    def _shaped_module(self, n_train_images: int) -> nn.Module:
        return MeanImageModel(torch.zeros(3, *self.input_resize.size), self.blur_sigma)


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
    calibration = detector.calibration
    assert calibration.normalizer.transform(np.array([calibration.image_threshold]))[0] == pytest.approx(0.5)


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


@pytest.mark.parametrize("name", list_detectors())
def test_every_setting_is_an_explicit_keyword_with_its_default(name):
    cls = type(create(name))
    parameters = inspect.signature(cls).parameters
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters.values())  # no **kwargs, nothing positional
    assert sorted(parameters) == sorted(cls.param_names())
    assert {n: p.default for n, p in parameters.items()} == cls().get_params()
    with pytest.raises(TypeError):
        cls(0.5)


def test_a_redeclared_default_keeps_the_inherited_check():
    # STFPM redeclares blur_sigma (8, not 4) without a check: Detector's non-negative check still runs.
    assert create("stfpm").blur_sigma == 8.0
    with pytest.raises(ConfigError, match="blur_sigma must be .*, got -1"):
        create("stfpm", blur_sigma=-1).check_params()
    # SimpleNet redeclares layers with a stricter check than BackboneSettings'.
    create("stfpm", layers=(3,)).check_params()
    with pytest.raises(ConfigError, match="layers"):
        create("simplenet", layers=(3,)).check_params()


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
    with pytest.raises(CheckpointError, match="other.pt is not a defectlens image detector checkpoint"):
        load(tmp_path / "other.pt")


def test_load_names_the_file_when_weights_do_not_fit_the_settings(fitted, tmp_path):
    import torch

    detector, _, _ = fitted
    checkpoint = torch.load(detector.save(tmp_path / "model.pt"), weights_only=True)
    # The first weight (or buffer, for a model without weights) is shaped by the settings, not by the data.
    name, weight = next(
        itertools.chain(detector.module_.named_parameters(), detector.module_.named_buffers())
    )
    checkpoint["state_dict"][name] = torch.zeros(*weight.shape, 2)  # one more dimension than saved
    torch.save(checkpoint, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="edited.pt: the saved weights do not fit"):
        load(tmp_path / "edited.pt")


def test_complexity_of_the_shaped_module_matches_a_fitted_one(fitted, quick):
    from defectlens.models.complexity import measure

    detector, _, splits = fitted
    shaped = quick(detector.name).shaped_module(len(splits.train))
    real, estimate = measure(detector.module_, (64, 64)), measure(shaped, (64, 64))
    assert estimate.parameters == real.parameters
    assert estimate.gflops == pytest.approx(real.gflops, rel=0.2)  # the memory bank size depends on rounding


def test_a_detector_defined_in_one_test_file_works_everywhere(tiny_mvtec, tmp_path, quick):
    from defectlens.cli import app
    from defectlens.export import export_detector
    from defectlens.inference import Inferencer

    assert "test-mean-image" in list_detectors()
    listing = CliRunner().invoke(app, ["models"]).output
    assert "test-mean-image" in listing and "blur_sigma = 1.0" in listing
    with pytest.raises(ConfigError, match="blur_sigma must be a number >= 0, got -1"):
        create("test-mean-image", blur_sigma=-1).check_params()
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("test-mean-image").fit(splits)
    restored = load(detector.save(tmp_path / "model.pt"))
    exported = Inferencer(export_detector(restored, tmp_path / "onnx", "onnx"))
    assert exported.name == "test-mean-image"
    ours, theirs = detector.predict(splits.test), exported.predict(splits.test)
    np.testing.assert_allclose(theirs.score, ours.score, atol=1e-4)


def test_detector_and_inferencer_keep_one_scorer_contract(tiny_mvtec, tmp_path, quick):
    from defectlens.engine.predict import Scorer
    from defectlens.export import export_detector
    from defectlens.inference import Inferencer

    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("test-mean-image").fit(splits)
    exported = Inferencer(export_detector(detector, tmp_path / "onnx", "onnx"))
    assert isinstance(detector, Scorer) and isinstance(exported, Scorer)
    assert exported.calibration.to_dict() == detector.calibration.to_dict()
    assert exported.input_resize == detector.input_resize
    assert exported.get_params() == detector.get_params()
    ours, theirs = (next(s.iter_predict(splits.test)) for s in (detector, exported))
    assert type(ours) is type(theirs)
    assert ours.names == theirs.names == [str(r.path) for r in splits.test[: len(ours.names)]]
    from defectlens.data import read_image

    for image, record in zip(ours.images, splits.test, strict=False):
        np.testing.assert_array_equal(image, read_image(record.path))  # decoded once, handed on
