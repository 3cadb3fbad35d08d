"""refit --with-feedback: marked good images grow PatchCore's bank, marked defects set the threshold."""

from __future__ import annotations

import json

import pytest
import torch

from defectlens.engine import DataSpec, evaluate_run, train
from defectlens.engine.feedback import refit_with_feedback
from defectlens.engine.marks import FeedbackStore
from defectlens.errors import ConfigError
from defectlens.models import load

SMALL = {"image_size": 64, "batch_size": 4, "device": "cpu"}


@pytest.fixture
def tested_run(tiny_mvtec, tmp_path):
    run = train(
        "patchcore", DataSpec.mvtec(tiny_mvtec, val_fraction=0.25), tmp_path / "run", SMALL, progress=False
    ).run
    evaluate_run(run, report=False, progress=False)
    return run


def test_refit_grows_the_bank_recalibrates_and_records_both_metrics(tested_run):
    lines = [json.loads(x) for x in (tested_run / "test_predictions.jsonl").read_text().splitlines()]
    assert {x["truth"] for x in lines} == {"normal", "anomalous"} and all("score" in x for x in lines)
    good = [x["path"] for x in lines if x["truth"] == "normal"][:2]
    bad = [x["path"] for x in lines if x["truth"] == "anomalous"][:2]
    store = FeedbackStore(tested_run / "feedback.sqlite")
    for path in good:
        store.set(path, "good")
    for path in bad:
        store.set(path, "defective")
    bank_before = len(load(tested_run / "model.pt").module_.memory_bank)

    entry = refit_with_feedback(tested_run, progress=False)

    refitted = load(tested_run / "model.pt")
    assert len(refitted.module_.memory_bank) > bank_before
    # The marked defects join the calibration; the out-of-fold good scores of fitting are kept.
    point = refitted.calibration_.operating_point()
    assert point["n_defective"] == 2 and 0 <= point["calibration_recall"] <= 1
    assert point["n_good"] == load(tested_run / entry["previous_checkpoint"]).calibration_.good_scores.size
    assert (tested_run / entry["previous_checkpoint"]).is_file()
    assert entry["marked_good"] == 2 and entry["marked_defective"] == 2
    assert entry["evaluated_on"].startswith(f"{len(lines) - 4} test images")
    assert (
        set(entry["before"]) >= {"image_auroc", "threshold"} and entry["after"]["n_images"] == len(lines) - 4
    )
    history = json.loads((tested_run / "feedback.json").read_text())
    assert history == [entry]
    # the marked good images now sit in the bank: they score near zero
    scores = refitted.predict(good).raw_score
    assert torch.tensor(scores).max() < refitted.calibration.image_threshold


def test_refit_without_marks_says_what_to_do(tested_run):
    with pytest.raises(ConfigError, match="no marks in .*defectlens review"):
        refit_with_feedback(tested_run, progress=False)
