"""`defectlens augment ...`: train a DCGAN on one defect class, generate images, check them for copies.

Commands import torch when they run, so `defectlens --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from defectlens.cli_common import ForceOpt, VerboseOpt, console, parse_settings, run_job, setup_logging

augment_app = typer.Typer(
    help="GAN data augmentation for rare defect classes: train, generate, copy check.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

RunOpt = Annotated[Path, typer.Option("--run", help="Run folder written by `defectlens augment train`.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same images).")]


@augment_app.command("train")
def train_command(
    data: Annotated[Path, typer.Option("--data", help="Folder of images of one defect class.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    image_size: Annotated[
        int,
        typer.Option("--image-size", help="Side of the generated images: 64, 128 or 256 (squash resize)."),
    ] = 64,
    epochs: Annotated[int, typer.Option("--epochs", help="GAN training epochs.")] = 100,
    width: Annotated[
        int,
        typer.Option("--width", help="Channels of the discriminator's first stage (x2 per stage, <= x8)."),
    ] = 64,
    channels: Annotated[
        int | None, typer.Option("--channels", help="1 (grey) or 3 (RGB); default: grey when every image is.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch.")] = 16,
    seed: SeedOpt = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Other DCGAN setting key=value (JSON value), e.g. --set spectral_norm=false"
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted training in --out.")
    ] = False,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train the spectral-norm DCGAN on every image of one folder and write a run folder (gan.pt,
    training/samples/ grids after every epoch).

    Example:

        defectlens augment train --data ../shared/data/neu/scratches --out runs/gan-scratches
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.augment.runs import train_run

        params = {
            **parse_settings(settings, None),
            "image_size": image_size,
            "max_epochs": epochs,
            "width": width,
            "batch_size": batch_size,
            "seed": seed,
            "device": device,
        }
        if channels is not None:
            params["channels"] = channels
        result = train_run(data, out, params, force=force, resume=resume, progress=True)
        console.print(
            f"trained on {result['n_images']} images ({result['mode']}) for {result['epochs']} epochs in "
            f"{result['train_seconds']:.1f} s -> {out}   (sample grids: {out / 'training' / 'samples'})"
        )

    run_job(job)


@augment_app.command("generate")
def generate_command(
    run: RunOpt,
    n: Annotated[int, typer.Option("-n", "--n", help="Number of images to generate.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the generated PNG images.")],
    seed: SeedOpt = 0,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Generate N images as PNG in the training images' mode, with overview/contact_sheet.png.

    Example:

        defectlens augment generate --run runs/gan-scratches -n 500 --out synth/scratches
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.augment.runs import generate_run

        paths = generate_run(run, n, out, seed=seed, force=force, progress=True)
        console.print(f"wrote {len(paths)} images to {out} (contact sheet: {out / 'overview'})")

    run_job(job)


@augment_app.command("check")
def check_command(
    run: RunOpt,
    data: Annotated[
        Path | None, typer.Option("--data", help="Training images to compare with; default: the run's.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder; default: <run>/check.")] = None,
    n: Annotated[
        int | None, typer.Option("-n", "--n", help="Images to generate; default: as many as training images.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Nearest training images per generated image.")] = 5,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Copy check and quality: nearest training images of generated ones (pixels and backbone features),
    Fréchet feature distance and KID-style MMD²; writes report.json, report.md, nearest.csv, pictures.

    Example:

        defectlens augment check --run runs/gan-scratches --data ../shared/data/neu/scratches
    """
    setup_logging(verbose)

    def job() -> None:
        from defectlens.augment.check import FRECHET_NAME, check_run

        report = check_run(run, data, out, n=n, k=k, seed=seed, force=force, progress=True)
        for space, stats in report["copy"].items():
            console.print(
                f"{space}: {stats['close_fraction']:.1%} of generated images closer than the "
                f"{stats['percentile']:g}th percentile of real-real distances"
                + (" (flagged in this space)" if stats["flagged"] else "")
            )
        verdict = "[bold red]copying flagged[/]" if report["flagged"] else "no copying flagged"
        console.print(f"verdict: {verdict} (flagged when both spaces flag it)")
        quality = report["quality"]
        console.print(
            f"{FRECHET_NAME}: {quality['frechet_feature_distance']:.4g};  KID-style MMD²: "
            f"{quality['kid']:.4g} ± {quality['kid_std']:.2g}"
        )
        console.print(f"report: {report['report_dir']}")

    run_job(job)


__all__ = ["augment_app"]
