"""Does GAN augmentation help a classifier trained on few real images? The experiment of the seed.

Protocol (one folder per class under `root`, e.g. the 6 NEU classes):

1. A fixed test set: `n_test` images per class drawn once with `split_seed`; it is never used to train a
   GAN or a classifier. The rest of each class is the pool.
2. For every seed and every `n_real`: `n_real` images per class drawn from the pool. For each class a
   DCGAN is trained on those `n_real` images only (training a GAN on more images of the class, or on the
   test images, would leak information the small-data classifier is not supposed to have), and generates
   `n_synthetic` images.
3. The classifier is a multinomial logistic regression on frozen, pooled EfficientNet-Lite0 features
   (`features.Embedder`, standardised), fitted in three conditions: the real images only; the real images
   with their flips (identity, horizontal, vertical, both: a classical augmentation baseline); the real
   images plus the GAN images. All images, real and generated, are at the GAN's size and mode, so the
   classifier cannot tell the sets apart by resolution.
4. Accuracy and macro-F1 on the fixed test set; the caller reports mean and spread over seeds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.augment.check import copy_check
from defectlens.augment.features import Embedder, pixel_vectors
from defectlens.augment.images import ImageSet, load_image_set
from defectlens.data.io import list_images
from defectlens.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CONDITIONS = ("real", "real + flips", "real + GAN")


def class_folders(root: str | Path) -> dict[str, Path]:
    """The subfolders of `root` that hold images, by name (folders without images, e.g. annotations,
    are skipped).

    Raises:
        DataError: `root` is missing or has fewer than 2 such folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"class root {root} is not a folder")
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and list_images(p)}
    if len(folders) < 2:
        raise DataError(
            f"{root} needs at least 2 subfolders of images (one per class), found {sorted(folders)}"
        )
    return folders


def split_test(
    sizes: dict[str, int], n_test: int, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per class, `n_test` random indices for the fixed test set and the remaining indices (the pool).

    Raises:
        DataError: a class has no more than `n_test` images.
    """
    rng = np.random.default_rng(seed)
    test, pool = {}, {}
    for name, size in sizes.items():
        if size <= n_test:
            raise DataError(f"class {name} has {size} images; it needs more than n_test={n_test}")
        order = rng.permutation(size)
        test[name], pool[name] = np.sort(order[:n_test]), np.sort(order[n_test:])
    return test, pool


def flips(images: np.ndarray) -> np.ndarray:
    """(N, S, S[, 3]) -> (4N, ...): each image, mirrored left-right, upside down, and both."""
    return np.concatenate([images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]])


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> dict[str, float]:
    """Standardised multinomial logistic regression (L2, C = 1): accuracy and macro-F1 on the test set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    predicted = model.fit(train_x, train_y).predict(test_x)
    return {
        "accuracy": float(accuracy_score(test_y, predicted)),
        "macro_f1": float(f1_score(test_y, predicted, average="macro")),
    }


def epochs_for(steps: int, n_images: int, batch_size: int) -> int:
    """Epochs that give about `steps` optimiser steps on `n_images` images (last partial batch dropped)."""
    return max(1, math.ceil(steps / max(1, n_images // batch_size)))


def augmentation_experiment(
    root: str | Path,
    n_real: Sequence[int] = (10, 20),
    seeds: Sequence[int] = (0, 1, 2),
    n_test: int = 100,
    n_synthetic: int = 50,
    gan_steps: int = 300,
    gan_settings: dict[str, Any] | None = None,
    split_seed: int = 0,
    progress: bool = False,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Run the protocol of the module docstring.

    Args:
        root: one subfolder of images per class.
        n_real: real training images per class, one experiment each.
        seeds: repetitions; each draws new training images and trains new GANs.
        n_test: fixed test images per class.
        n_synthetic: GAN images added per class.
        gan_steps: optimiser steps of each class's GAN (epochs follow from `n_real` and the batch size).
        gan_settings: DCGAN settings (see `runs.SETTINGS`); `max_epochs` and `seed` are set here.
        split_seed: seed of the fixed test split.
        progress: show progress bars.
        embedder: the feature extractor (default EfficientNet-Lite0).

    Returns:
        `rows` (one per seed, n_real and condition: accuracy, macro_f1, n_train), `gans` (one per seed,
        n_real and class: seconds, epochs, copy-check close fractions against its own training images),
        and the settings used.

    Raises:
        ConfigError: an `n_real` below 2 (a GAN needs 2 images). DataError: too few images in a class.
    """
    from defectlens.augment.runs import DEFAULTS, dcgan
    from defectlens.models.gan.detector import generate_images

    if any(n < 2 for n in n_real) or n_synthetic < 1:
        raise ConfigError(
            f"n_real values must be >= 2 and n_synthetic >= 1, got {list(n_real)}, {n_synthetic}"
        )
    settings = {**DEFAULTS, **(gan_settings or {})}
    embedder = embedder or Embedder()
    folders = class_folders(root)
    names = sorted(folders)
    sets: dict[str, ImageSet] = {
        name: load_image_set(folders[name], settings["image_size"], settings.get("channels"), progress)
        for name in names
    }
    features = {name: embedder(sets[name].images, progress, f"features {name}") for name in names}
    test, pool = split_test({name: len(sets[name].images) for name in names}, n_test, split_seed)
    test_x = np.concatenate([features[name][test[name]] for name in names])
    test_y = np.concatenate([np.full(n_test, c) for c, name in enumerate(names)])
    rows, gans = [], []
    for seed in seeds:
        for n in n_real:
            rng = np.random.default_rng([seed, n])
            parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in CONDITIONS}
            for c, name in enumerate(names):
                if len(pool[name]) < n:
                    raise DataError(f"class {name} has {len(pool[name])} pool images, fewer than n_real={n}")
                chosen = rng.choice(pool[name], n, replace=False)
                real_images, real_x = sets[name].images[chosen], features[name][chosen]
                detector = dcgan(
                    {
                        **settings,
                        "channels": sets[name].channels,
                        "seed": seed,
                        "max_epochs": epochs_for(gan_steps, n, settings["batch_size"]),
                    }
                )
                start = time.perf_counter()
                generator, _ = detector.train_gan(list(real_images))
                seconds = time.perf_counter() - start
                synthetic = generate_images(generator, n_synthetic, seed)
                synthetic_x = embedder(synthetic)
                flipped_x = embedder(flips(real_images)[n:])
                label = np.full(n, c)
                parts["real"].append((real_x, label))
                parts["real + flips"] += [(real_x, label), (flipped_x, np.full(len(flipped_x), c))]
                parts["real + GAN"] += [(real_x, label), (synthetic_x, np.full(n_synthetic, c))]
                close = {
                    f"{space}_close_fraction": copy_check(ref, query, k=1).stats.close_fraction
                    for space, ref, query in (
                        ("pixel", pixel_vectors(real_images), pixel_vectors(synthetic)),
                        ("feature", real_x, synthetic_x),
                    )
                }
                gans.append(
                    {
                        "seed": seed,
                        "n_real": n,
                        "class": name,
                        "epochs": detector.max_epochs,
                        "seconds": seconds,
                    }
                    | close
                )
                logger.info("seed %d, %d real, %s: GAN %.1f s, %s", seed, n, name, seconds, close)
            for condition, items in parts.items():
                train_x = np.concatenate([x for x, _ in items])
                train_y = np.concatenate([y for _, y in items])
                result = linear_probe(train_x, train_y, test_x, test_y)
                rows.append(
                    {"seed": seed, "n_real": n, "condition": condition, "n_train": len(train_y)} | result
                )
                logger.info("seed %d, %d real, %s: %s", seed, n, condition, result)
    return {
        "classes": names,
        "n_test_per_class": n_test,
        "n_synthetic_per_class": n_synthetic,
        "gan_steps": gan_steps,
        "gan_settings": settings,
        "split_seed": split_seed,
        "rows": rows,
        "gans": gans,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of accuracy and macro-F1, per n_real and condition."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["n_real"], row["condition"]), []).append(row)
    return [
        {
            "n_real": n,
            "condition": condition,
            "seeds": len(group),
            **{
                f"{metric}_{stat}": float(fn([r[metric] for r in group]))
                for metric in ("accuracy", "macro_f1")
                for stat, fn in (("mean", np.mean), ("std", np.std))
            },
        }
        for (n, condition), group in sorted(
            groups.items(), key=lambda item: (item[0][0], CONDITIONS.index(item[0][1]))
        )
    ]


__all__ = [
    "CONDITIONS",
    "augmentation_experiment",
    "class_folders",
    "epochs_for",
    "flips",
    "linear_probe",
    "split_test",
    "summarise",
]
