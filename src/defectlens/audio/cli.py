"""`defectlens audio ...`: train, test and predict machine-sound anomaly detectors.

Commands import torch and the models when they run, so `defectlens --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from defectlens.cli_common import VerboseOpt, console, parse_settings, run_job, setup_logging

audio_app = typer.Typer(
    help="Machine-sound anomaly detection on DCASE-style clips (AEGAN-AD, DCASE 2020 baseline AE).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

RunOpt = Annotated[Path, typer.Option("--run", help="Run folder written by `defectlens audio train`.")]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Feature cache folder (default: <run>/features); share one between runs."
    ),
]
MachineOpt = Annotated[
    str | None, typer.Option("--machine-type", help="Use only this machine type (a folder name, e.g. fan).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
PicturesOpt = Annotated[
    int, typer.Option("--pictures", help="Spectrogram + score pictures of this many highest-scoring clips.")
]


def _show_metrics(metrics: dict[str, Any]) -> None:
    from rich.table import Table

    sections = sorted(next(iter(metrics["scores"].values()))["sections"])
    table = Table(
        title=f"{metrics['n_clips']} test clips ({metrics['n_anomalous']} anomalous); "
        f"selected score: {metrics['selected_score']}"
    )
    table.add_column("score")
    for section in sections:
        table.add_column(f"{section} AUC", justify="right")
        table.add_column(f"{section} pAUC", justify="right")
    for column in ("mean AUC", "mean pAUC", "hmean"):
        table.add_column(column, justify="right")
    for name, result in metrics["scores"].items():
        cells = [f"{result['sections'][s][key]:.3f}" for s in sections for key in ("auc", "pauc")]
        cells += [f"{result[key]:.3f}" for key in ("mean_auc", "mean_pauc", "hmean")]
        style = "bold" if name == metrics["selected_score"] else None
        table.add_row(name, *cells, style=style)
    console.print(table)


@audio_app.command("models")
def models_command() -> None:
    """List the audio detectors and their settings with defaults."""
    from defectlens.audio.models import audio_detector_class, list_audio_detectors

    for name in list_audio_detectors():
        cls = audio_detector_class(name)
        console.print(f"[bold]{name}[/]: {(cls.__doc__ or '').strip().splitlines()[0]}")
        for key, default in cls().get_params().items():  # constructors only store: these are the defaults
            console.print(f"    {key} = {default!r}")


@audio_app.command("train")
def train_command(
    data: Annotated[Path, typer.Option("--data", help="DCASE root, machine-type folder or train/ folder.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Audio detector; see `defectlens audio models`.")
    ],
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Model setting key=value (value read as JSON), repeatable: --set max_epochs=5"
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON file of model settings.")] = None,
    machine_type: MachineOpt = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted training in --out.")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Fit a detector on the normal clips of `train/` and write a run folder (model.pt, config.json).

    Example:

        defectlens audio train -m aegan-ad --data dcase/dev_data/fan --out runs/fan --set max_epochs=20
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.audio.runs import train_run

        given = {"device": device, "seed": seed}
        params = {**parse_settings(settings, config), **{k: v for k, v in given.items() if v is not None}}
        result = train_run(model, data, out, params, machine_type, cache_dir, force, resume, progress=True)
        n_train, seconds = result["data"]["n_train"], result["fit_seconds"]
        console.print(
            f"fitted {result['model']} on {n_train} clips in {seconds:.1f} s; "
            f"threshold {result['threshold']:.4g} -> {out}"
        )

    run_job(job)


@audio_app.command("test")
def test_command(
    run: RunOpt,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Test data (root, machine-type or test/ folder); default: the run's."),
    ] = None,
    machine_type: MachineOpt = None,
    max_fpr: Annotated[float, typer.Option("--max-fpr", help="pAUC limit (DCASE: 0.1).")] = 0.1,
    pictures: PicturesOpt = 4,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write histogram and pictures.")
    ] = True,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score the labelled clips of `test/` and write metrics.json, scores.csv and report/ into the run.

    Reports AUC and pAUC per machine id / section, their means and harmonic mean, for every score.

    Example:

        defectlens audio test --run runs/fan
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.audio.runs import test_run

        metrics = test_run(
            run, data, machine_type, cache_dir, max_fpr, pictures, report, force, progress=True
        )
        _show_metrics(metrics)
        console.print(f"metrics: {run / 'metrics.json'}   scores: {run / 'scores.csv'}")

    run_job(job)


@audio_app.command("predict")
def predict_command(
    run: RunOpt,
    inputs: Annotated[list[Path], typer.Argument(help="Audio files or folders of .wav files.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for predictions.csv and pictures.")],
    pictures: PicturesOpt = 4,
    cache_dir: CacheOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Score new clips with a trained run; clips at or above the run's threshold are flagged anomalous.

    Example:

        defectlens audio predict --run runs/fan recordings/ --out preds
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.audio.runs import predict_clips

        path = predict_clips(run, list(inputs), out, cache_dir, pictures, force, progress=True)
        console.print(f"predictions: {path}")

    run_job(job)
