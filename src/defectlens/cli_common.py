"""What every `defectlens` command group shares: the console, logging, the settings parser, error
handling and the common options. Imports no torch, so `defectlens --help` stays fast."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from defectlens.errors import ConfigError, DefectlensError

console = Console()
Result = TypeVar("Result")

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what is happening.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing, non-empty output folder.")]


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def parse_settings(settings: list[str] | None, config: Path | None) -> dict[str, Any]:
    """Model settings from a JSON config file, then `--set key=value` pairs (values read as JSON)."""
    params: dict[str, Any] = {}
    if config is not None:
        try:
            params.update(json.loads(config.read_text()))
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read config file {config}: {error}") from error
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value, got '{item}'")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def run_job(job: Callable[[], Result]) -> Result:
    """Run a job, turning defectlens errors into one clear line and exit code 1."""
    try:
        return job()
    except DefectlensError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(1) from error
