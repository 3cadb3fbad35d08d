"""What every detector built around a frozen network and trained for epochs shares: resume, and early
stopping on image AUROC when the validation images include labelled anomalies."""

from __future__ import annotations

import json

import pytest

from defectlens.data import load_mvtec
from defectlens.models import create

TRAINED = ["stfpm", "simplenet", "rd4ad"]
TINY = {"image_size": 64, "batch_size": 4, "device": "cpu", "calibration_refits": 0}  # one training per fit


@pytest.fixture(scope="module")
def splits(tiny_mvtec):
    return load_mvtec(tiny_mvtec, val_fraction=0.25)


@pytest.mark.parametrize("name", TRAINED)
def test_resume_continues_from_the_saved_state(name, splits, tmp_path):
    first = create(name, max_epochs=2, **TINY).fit(splits, work_dir=tmp_path)
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2
    resumed = create(name, max_epochs=3, **TINY).fit(splits, work_dir=tmp_path, resume=True)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    assert resumed.history_[:2] == first.history_
    # Continuing for one epoch gives the same result as training 3 epochs in one go.
    straight = create(name, max_epochs=3, **TINY).fit(splits)
    assert straight.history_[2]["loss"] == pytest.approx(resumed.history_[2]["loss"], rel=1e-4)


@pytest.mark.parametrize("name", TRAINED)
def test_labelled_validation_anomalies_switch_monitor_to_auroc(name, splits):
    val = list(splits.val) + [r for r in splits.test if r.label == 1][:2]
    detector = create(name, max_epochs=2, patience=None, **TINY).fit(splits.train, val=val)
    assert all("val_neg_auroc" in h and -1 <= h["val_neg_auroc"] <= 0 for h in detector.history_)
