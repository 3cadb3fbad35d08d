"""The with/without augmentation experiment on two tiny classes: protocol, leakage, outputs."""

from __future__ import annotations

import numpy as np
import pytest

from defectlens.augment.experiment import (
    CONDITIONS,
    augmentation_experiment,
    class_folders,
    epochs_for,
    flips,
    linear_probe,
    split_test,
    summarise,
)
from defectlens.errors import ConfigError, DataError

from .conftest import write_class


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    write_class(root / "horizontal", range(12))
    write_class(root / "vertical", range(100, 112), vertical=True)
    (root / "annotations").mkdir()  # no images: not a class
    return root


def test_class_folders_skip_folders_without_images(two_classes, tmp_path):
    assert sorted(class_folders(two_classes)) == ["horizontal", "vertical"]
    with pytest.raises(DataError, match="at least 2 subfolders"):
        class_folders(two_classes / "annotations")


def test_test_split_is_fixed_and_disjoint_from_the_pool():
    test, pool = split_test({"a": 10, "b": 12}, 3, seed=0)
    again, _ = split_test({"a": 10, "b": 12}, 3, seed=0)
    for name, size in (("a", 10), ("b", 12)):
        assert len(test[name]) == 3 and not set(test[name]) & set(pool[name])
        assert sorted([*test[name], *pool[name]]) == list(range(size))
        assert np.array_equal(test[name], again[name])
    with pytest.raises(DataError, match="n_test=10"):
        split_test({"a": 10}, 10, seed=0)


def test_flips_and_epochs():
    images = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    out = flips(images)
    assert out.shape == (8, 2, 2) and np.array_equal(out[2], images[0][:, ::-1])
    assert np.array_equal(out[4], images[0][::-1]) and np.array_equal(out[6], images[0][::-1, ::-1])
    assert epochs_for(300, 10, 10) == 300 and epochs_for(300, 20, 10) == 150 and epochs_for(5, 3, 10) == 5


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20, 3)), rng.normal(5, 1, (20, 3))])
    y = np.repeat([0, 1], 20)
    assert linear_probe(x, y, x, y) == {"accuracy": 1.0, "macro_f1": 1.0}


def test_experiment_rows_per_seed_and_condition(two_classes, embedder):
    settings = {"image_size": 64, "width": 8, "batch_size": 4, "device": "cpu"}
    result = augmentation_experiment(
        two_classes,
        n_real=(3,),
        seeds=(0, 1),
        n_test=4,
        n_synthetic=5,
        gan_steps=2,
        gan_settings=settings,
        embedder=embedder,
    )
    assert result["classes"] == ["horizontal", "vertical"] and len(result["gans"]) == 4
    assert [(r["seed"], r["condition"]) for r in result["rows"]] == [
        (s, c) for s in (0, 1) for c in CONDITIONS
    ]
    n_train = {r["condition"]: r["n_train"] for r in result["rows"]}
    assert n_train == {"real": 6, "real + flips": 24, "real + GAN": 16}
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 for r in result["rows"])
    summary = summarise(result["rows"])
    assert [s["condition"] for s in summary] == list(CONDITIONS) and summary[0]["seeds"] == 2
    with pytest.raises(ConfigError, match="n_real"):
        augmentation_experiment(two_classes, n_real=(1,), embedder=embedder)
