"""DCASE pAUC, per-section AUC/pAUC and the DCASE 2022 harmonic mean against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from defectlens.errors import ConfigError
from defectlens.metrics import audio_auc_pauc, dcase_pauc


def test_pauc_counts_pairs_above_the_top_normals():
    # 10 normals, max_fpr 0.1 -> the single top normal (0.9); one of two anomalies beats it -> 1/2.
    normals = [0.9, 0.1, 0.2, 0.3, 0.15, 0.25, 0.05, 0.35, 0.12, 0.22]
    anomalies = [0.95, 0.5]
    labels = [0] * 10 + [1] * 2
    assert dcase_pauc(labels, normals + anomalies, max_fpr=0.1) == pytest.approx(0.5)


def test_pauc_is_not_sklearns_mcclish_standardised_value():
    normals = [0.9, 0.1, 0.2, 0.3, 0.15, 0.25, 0.05, 0.35, 0.12, 0.22]
    labels, scores = [0] * 10 + [1] * 2, normals + [0.95, 0.5]
    # sklearn: 0.5 * (1 + (0.05 - 0.005) / (0.1 - 0.005)), by hand
    assert roc_auc_score(labels, scores, max_fpr=0.1) == pytest.approx(0.5 * (1 + 0.045 / 0.095))
    assert dcase_pauc(labels, scores, max_fpr=0.1) == pytest.approx(0.5)


def test_pauc_interpolates_inside_a_step_and_counts_ties_as_half():
    # ROC: (0, 0) -> (0, 0.5) -> (0.25, 0.5) -> ...; area up to fpr 0.1 is 0.05 -> 0.5.
    assert dcase_pauc([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.6, 0.5, 0.7], 0.1) == pytest.approx(0.5)
    # A tie between the top normal and the anomaly is a diagonal step: area 0.25 up to 0.5 -> 0.5.
    assert dcase_pauc([0, 0, 1], [0.5, 0.1, 0.5], 0.5) == pytest.approx(0.5)


def test_pauc_extremes_and_chance_level():
    assert dcase_pauc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert dcase_pauc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    rng = np.random.default_rng(0)
    scores = rng.random(40000)
    labels = np.r_[np.zeros(20000), np.ones(20000)]
    assert dcase_pauc(labels, scores, 0.1) == pytest.approx(0.05, abs=0.01)  # max_fpr / 2, not 0.5


def test_pauc_rejects_a_bad_limit():
    with pytest.raises(ConfigError, match="fpr_limit in \\(0, 1\\]"):
        dcase_pauc([0, 1], [0.1, 0.2], max_fpr=0.0)


def test_per_section_means_and_harmonic_mean():
    labels = [0, 0, 1, 1] + [0, 0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.8, 0.9] + [0.1, 0.2, 0.3, 0.4, 0.35, 0.5]
    sections = ["id_00"] * 4 + ["id_02"] * 6
    result = audio_auc_pauc(labels, scores, sections, max_fpr=0.25)
    id02 = result["sections"]["id_02"]
    assert id02["auc"] == pytest.approx(7 / 8)  # 0.35 beats 3 normals, 0.5 beats 4: 7 of 8 pairs
    assert id02["pauc"] == pytest.approx(0.5)  # top normal 0.4: only 0.5 beats it
    assert (id02["n_normal"], id02["n_anomalous"]) == (4, 2)
    assert result["sections"]["id_00"]["auc"] == result["sections"]["id_00"]["pauc"] == 1.0
    assert result["mean_auc"] == pytest.approx((1 + 7 / 8) / 2)
    assert result["mean_pauc"] == pytest.approx(0.75)
    assert result["hmean"] == pytest.approx(4 / (1 + 1 + 8 / 7 + 2))


def test_domains_follow_dcase_2022():
    # Source normals 0.1, 0.2; target normals 0.3, 0.6; anomalies 0.5 (source) and 0.7 (target).
    scores = [0.1, 0.2, 0.3, 0.6, 0.5, 0.7]
    labels = [0, 0, 0, 0, 1, 1]
    domains = ["source", "source", "target", "target", "source", "target"]
    result = audio_auc_pauc(labels, scores, ["section_00"] * 6, domains, max_fpr=0.25)
    section = result["sections"]["section_00"]
    assert section["auc_source"] == 1.0  # source normals against all anomalies
    assert section["auc_target"] == pytest.approx(0.75)  # 0.5 loses to 0.6 only
    assert section["pauc"] == pytest.approx(0.5)  # both domains' normals: top normal 0.6
    assert result["hmean"] == pytest.approx(3 / (1 + 4 / 3 + 2))


def test_section_without_anomalies_and_bad_domains_are_named():
    with pytest.raises(ConfigError, match="section id_02"):
        audio_auc_pauc([0, 1, 0, 0], [0.1, 0.9, 0.2, 0.3], ["id_00", "id_00", "id_02", "id_02"])
    with pytest.raises(ConfigError, match="'source' or 'target'"):
        audio_auc_pauc([0, 1], [0.1, 0.9], ["s", "s"], ["source", "other"])
    with pytest.raises(ConfigError, match="3 sections for 2 scores"):
        audio_auc_pauc([0, 1], [0.1, 0.9], ["s", "s", "s"])
