"""The audio detector interface: registry, constructor contract, fit checks, checkpoints."""

from __future__ import annotations

import pytest
import torch

from defectlens.audio.models import audio_detector_class, create, list_audio_detectors, load_audio_detector
from defectlens.errors import CheckpointError, ConfigError, DataError, NotFittedError

from ..conftest import TINY_MODELS


def test_registry_lists_both_families_and_names_valid_ones():
    assert list_audio_detectors() == ["aegan-ad", "dcase-baseline-ae"]
    with pytest.raises(ConfigError, match="unknown audio model 'wavenet'.*aegan-ad, dcase-baseline-ae"):
        create("wavenet")
    with pytest.raises(ConfigError, match="has no setting \\['frames'\\]"):
        create("aegan-ad", frames=5)


@pytest.mark.parametrize("name", ["aegan-ad", "dcase-baseline-ae"])
def test_constructor_only_stores_and_get_params_round_trips(name):
    detector = create(name, seed=3)
    assert set(vars(detector)) == set(audio_detector_class(name).param_names())
    assert type(detector)(**detector.get_params()).get_params() == detector.get_params()


@pytest.mark.parametrize("name", ["aegan-ad", "dcase-baseline-ae"])
def test_scoring_before_fit_and_fitting_on_nothing_are_refused(name, tiny_test_clips, tmp_path):
    detector = create(name, **TINY_MODELS[name])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        detector.score_clips(tiny_test_clips)
    with pytest.raises(ConfigError, match="at least one clip"):
        detector.fit([])
    not_audio = tmp_path / "normal_id_00_00000000.wav"
    not_audio.write_text("text")
    with pytest.raises(DataError, match="cannot read audio file"):
        detector.fit([not_audio])


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_audio_detector(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"format_version": 1}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt is not a defectlens audio detector checkpoint"):
        load_audio_detector(foreign)
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(CheckpointError, match="cannot read audio detector checkpoint"):
        load_audio_detector(tmp_path / "junk.pt")


def test_save_refuses_to_overwrite_without_force(tiny_train_clips, tmp_path):
    detector = create("dcase-baseline-ae", **{**TINY_MODELS["dcase-baseline-ae"], "max_epochs": 1})
    path = detector.fit(tiny_train_clips[:2]).save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="exists; pass force=True"):
        detector.save(path)
    assert detector.save(path, force=True) == path
