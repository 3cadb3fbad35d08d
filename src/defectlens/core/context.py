"""What fitting needs besides the data: the device, progress bars and the folder of training state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from defectlens.errors import ConfigError


@dataclass(frozen=True)
class FitContext:
    """What a detector's fitting hook needs besides the data.

    Attributes:
        device: where to fit.
        progress: show progress bars.
        work_dir: folder for training state of iterative models (resume after an interruption);
            `None` keeps nothing on disk.
        resume: continue from the state in `work_dir` instead of starting over.
    """

    device: torch.device
    progress: bool = False
    work_dir: Path | None = None
    resume: bool = False

    @classmethod
    def create(
        cls, device: str, progress: bool = False, work_dir: str | Path | None = None, resume: bool = False
    ) -> FitContext:
        """The context for a device setting ("auto", "cpu", "cuda[:N]").

        Raises:
            ConfigError: `resume` without `work_dir`, or an unknown device.
        """
        if resume and work_dir is None:
            raise ConfigError("resume=True needs the work_dir that holds the training state")
        return cls(resolve_device(device), progress, None if work_dir is None else Path(work_dir), resume)


def resolve_device(device: str) -> torch.device:
    """`"auto"` means CUDA when available, else CPU; anything else goes to torch as is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from error


def progress_bar(iterable: Any, enabled: bool, desc: str, total: int | None = None) -> Any:
    """A tqdm bar when `enabled`, else the iterable untouched."""
    return tqdm(iterable, desc=desc, total=total, unit="batch", leave=False) if enabled else iterable
