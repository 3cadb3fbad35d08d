"""Audio run folders: train a detector on normal clips, test it on labelled clips, predict new clips.

A run folder holds `model.pt` (the one-file checkpoint), `config.json` (model, params, data, feature
settings, threshold and operating point, training history), `training/` (resume state), `features/`
(the default feature cache), and after `test_run`
`metrics.json`, `scores.csv` and `report/` (score histogram, one spectrogram-and-score picture per
highest-scoring clip).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from defectlens import __version__
from defectlens.audio.files import ClipInfo, audio_files, list_clips
from defectlens.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    from defectlens.audio.features import FeatureCache
    from defectlens.audio.models import AudioDetector, AudioScores

logger = logging.getLogger(__name__)

CHECKPOINT = "model.pt"
CONFIG = "config.json"
METRICS = "metrics.json"
SCORES = "scores.csv"
REPORT = "report"
TRAINING_DIR = "training"
PREDICTIONS = "predictions.csv"


FEATURES = "features"  # default feature cache of a run; pass cache_dir to share one between runs


def read_config(run: Path) -> dict[str, Any]:
    """The run's config.json.

    Raises:
        CheckpointError: the folder has no readable config.json or no model.pt.
    """
    path = Path(run) / CONFIG
    if not path.is_file() or not (Path(run) / CHECKPOINT).is_file():
        raise CheckpointError(f"{run} is not an audio run folder: it needs {CONFIG} and {CHECKPOINT}")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error


def train_run(
    model: str,
    data: str | Path,
    out: str | Path,
    params: dict[str, Any] | None = None,
    machine_type: str | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit detector `model` on the normal `train` clips under `data` and write a run folder.

    Args:
        model: audio detector name (see `list_audio_detectors`).
        data: DCASE root, machine-type folder or train folder.
        out: run folder; an existing non-empty one needs `force` (or `resume`).
        params: detector hyper-parameters.
        machine_type: keep only this machine type.
        cache_dir: feature cache folder; `None` uses `<out>/features`.
        force: replace an existing run folder.
        resume: continue an interrupted training in `out`.
        progress: show progress bars.

    Returns:
        The config written to config.json.

    Raises:
        DataError: no train clips, or a train clip is labelled anomalous.
        ConfigError: `out` exists without `force`/`resume`, or a bad model name or setting.
    """
    from defectlens.audio.models import create
    from defectlens.engine.runs import prepare_output, write_json

    detector = create(model, **(params or {}))
    clips = list_clips(data, "train", machine_type)
    anomalous = [clip.path.name for clip in clips if clip.label == 1]
    if anomalous:
        raise DataError(f"training needs normal clips only; {data} has anomalous ones: {anomalous[:3]}")
    out = Path(out)
    if not resume:
        prepare_output(out, force, "run folder")
    detector.fit(
        [clip.path for clip in clips],
        cache_dir=cache_dir if cache_dir is not None else out / FEATURES,
        progress=progress,
        work_dir=out / TRAINING_DIR,
        resume=resume,
    )
    detector.save(out / CHECKPOINT, force=True)
    config = {
        "kind": "audio",
        "model": detector.name,
        "params": detector.get_params(),
        "data": {
            "path": str(Path(data).resolve()),
            "machine_type": machine_type,
            "n_train": len(clips),
            "sections": sorted({clip.section for clip in clips}),
        },
        "features": asdict(detector.feature_settings),
        "threshold": detector.threshold_,
        "operating_point": detector.operating_point(),
        "fit_seconds": round(detector.fit_seconds_, 2),
        "history": detector.history_,
        "defectlens_version": __version__,
    }
    write_json(out / CONFIG, config)
    return config


def _score_table(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _clip_pictures(
    detector: AudioDetector,
    paths: list[Path],
    scores: AudioScores,
    folder: Path,
    count: int,
    cache: FeatureCache,
) -> None:
    """Spectrogram + window-score pictures of the `count` highest-scoring clips."""
    from defectlens.audio.figures import save_clip_scores
    from defectlens.engine.runs import unique_stem

    used: set[str] = set()
    for index in np.argsort(-scores.clip_scores, kind="stable")[:count]:
        spectrogram = cache.get(paths[index], detector.feature_settings)
        save_clip_scores(
            spectrogram,
            scores.frame_seconds,
            scores.window_times(index),
            scores.frame_scores[index],
            detector.threshold_,
            folder / f"{unique_stem(paths[index], used)}.png",
            title=f"{paths[index].name}: {detector.score} = {scores.clip_scores[index]:.4g}",
        )


def test_run(
    run: str | Path,
    data: str | Path | None = None,
    machine_type: str | None = None,
    cache_dir: str | Path | None = None,
    max_fpr: float = 0.1,
    pictures: int = 4,
    report: bool = True,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Score the labelled `test` clips and write metrics for every detection score of the detector.

    Args:
        run: run folder written by `train_run`.
        data: DCASE root, machine-type folder or test folder; `None` uses the training data's root.
        machine_type: keep only this machine type; `None` uses the run's.
        cache_dir: feature cache folder; `None` uses `<run>/features`.
        max_fpr: pAUC limit.
        pictures: spectrogram pictures of the highest-scoring clips in the report.
        report: write `report/` (histogram and pictures).
        force: overwrite an existing metrics.json and report.
        progress: show progress bars.

    Returns:
        The metrics: `selected_score`, `threshold`, `operating_point`, `n_clips`, `n_anomalous` and
        `scores`, name -> `audio_auc_pauc` result.

    Raises:
        CheckpointError: `run` is not an audio run folder.
        ConfigError: metrics exist without `force`.
        DataError: no test clips or a test clip without a normal/anomaly label in its name.
    """
    from defectlens.audio.features import FeatureCache
    from defectlens.audio.models import load_audio_detector
    from defectlens.engine.runs import prepare_output, write_json
    from defectlens.metrics import audio_auc_pauc
    from defectlens.reports.figures import save_score_histogram

    run = Path(run)
    config = read_config(run)
    if (run / METRICS).exists() and not force:
        raise ConfigError(f"{run / METRICS} exists; pass --force to overwrite it")
    root = Path(data) if data is not None else Path(config["data"]["path"])
    clips: list[ClipInfo] = list_clips(root, "test", machine_type or config["data"]["machine_type"])
    unlabelled = [clip.path.name for clip in clips if clip.label is None]
    if unlabelled:
        raise DataError(
            f"testing needs labelled clips (normal_/anomaly_ in the name); unlabelled: {unlabelled[:3]}"
        )
    detector = load_audio_detector(run / CHECKPOINT)
    cache_dir = cache_dir if cache_dir is not None else run / FEATURES
    paths = [clip.path for clip in clips]
    scores = detector.score_clips(paths, cache_dir=cache_dir, progress=progress)
    labels = np.array([clip.label for clip in clips])
    sections = [clip.section for clip in clips]
    domains = [clip.domain for clip in clips] if all(clip.domain for clip in clips) else None
    metrics = {
        "selected_score": detector.score,
        "threshold": detector.threshold_,
        "operating_point": detector.operating_point(),
        "n_clips": len(clips),
        "n_anomalous": int(labels.sum()),
        "data": str(root.resolve()),
        "scores": {
            name: audio_auc_pauc(labels, values, sections, domains, max_fpr)
            for name, values in scores.all_scores.items()
        },
    }
    write_json(run / METRICS, metrics)
    rows = [
        {"clip": str(clip.path), "section": clip.section, "domain": clip.domain or "", "label": clip.label}
        | {name: float(values[i]) for name, values in scores.all_scores.items()}
        for i, clip in enumerate(clips)
    ]
    _score_table(run / SCORES, rows)
    if report:
        folder = prepare_output(run / REPORT, True, "report folder")
        save_score_histogram(
            labels,
            scores.clip_scores,
            detector.threshold_,
            folder / "histogram.png",
            title=f"{config['model']}: {detector.score} on {len(clips)} test clips",
        )
        _clip_pictures(detector, paths, scores, folder / "clips", pictures, FeatureCache(cache_dir))
    return metrics


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Audio files from files and folders (a folder's `.wav` files, sorted).

    Raises:
        DataError: an input does not exist or no audio file is found.
    """
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += audio_files(item)
        elif item.is_file():
            paths.append(item)
        else:
            raise DataError(f"input not found: {item}")
    if not paths:
        raise DataError(f"no .wav files in {[str(i) for i in inputs]}")
    return paths


def predict_clips(
    run: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    cache_dir: str | Path | None = None,
    pictures: int = 4,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Score any clips (names need no convention) and write `predictions.csv` and pictures to `out`.

    Each row holds the clip, its score and whether it is at or above the run's threshold. `cache_dir`
    `None` uses `<run>/features`.

    Returns:
        The path of predictions.csv.

    Raises:
        CheckpointError: `run` is not an audio run folder.
        ConfigError: `out` exists and is not empty without `force`.
        DataError: an input is missing or not audio.
    """
    from defectlens.audio.features import FeatureCache
    from defectlens.audio.models import load_audio_detector
    from defectlens.engine.runs import prepare_output

    run = Path(run)
    read_config(run)
    paths = collect_inputs(inputs)
    detector = load_audio_detector(run / CHECKPOINT)
    out = prepare_output(Path(out), force, "output folder")
    cache_dir = cache_dir if cache_dir is not None else run / FEATURES
    scores = detector.score_clips(paths, cache_dir=cache_dir, progress=progress)
    rows = [
        {"clip": str(path), "score": float(score), "anomalous": bool(score >= detector.threshold_)}
        for path, score in zip(paths, scores.clip_scores, strict=True)
    ]
    _clip_pictures(detector, paths, scores, out / "clips", pictures, FeatureCache(cache_dir))
    return _score_table(out / PREDICTIONS, rows)
