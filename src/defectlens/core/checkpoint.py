"""One checkpoint file per fitted estimator: a header (kind, format version, writer, detector name,
settings), the module's weights, and the estimator's own calibration payload.

Image and audio detectors write and read through here, so both refuse the same bad files the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from defectlens import __version__
from defectlens.errors import CheckpointError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def write_checkpoint(
    path: str | Path,
    kind: str,
    detector: str,
    params: dict[str, Any],
    module: nn.Module,
    payload: dict[str, Any],
    force: bool = False,
) -> Path:
    """Write the header, `module`'s weights (on the CPU) and `payload` (the calibration) to `path`.

    Raises:
        CheckpointError: `path` exists and `force` is False.
    """
    path = Path(path)
    if path.exists() and not force:
        raise CheckpointError(f"checkpoint {path} exists; pass force=True (--force) to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "defectlens_version": __version__,
        "kind": kind,
        "detector": detector,
        "params": params,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        **payload,
    }
    torch.save(checkpoint, path)
    return path


def read_checkpoint(path: str | Path, kind: str, accept_unmarked: bool = False) -> dict[str, Any]:
    """The checkpoint dict at `path`, checked to be a defectlens checkpoint of `kind`.

    Args:
        accept_unmarked: also accept checkpoints without a `kind` (written before it was recorded).

    Raises:
        CheckpointError: the file is missing, unreadable, of another kind, or of a newer format.
    """
    path = Path(path)
    label = kind.replace("_", " ")
    if not path.is_file():
        raise CheckpointError(f"{label} checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a corrupt file
        raise CheckpointError(f"cannot read {label} checkpoint {path}: {error}") from error
    if not isinstance(checkpoint, dict) or "format_version" not in checkpoint:
        raise CheckpointError(f"{path} is not a defectlens {label} checkpoint")
    found = checkpoint.get("kind")
    if found != kind and not (found is None and accept_unmarked):
        held = f" (it holds a {found.replace('_', ' ')})" if isinstance(found, str) else ""
        raise CheckpointError(f"{path} is not a defectlens {label} checkpoint{held}")
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {checkpoint['format_version']}; this defectlens reads up to "
            f"{FORMAT_VERSION}: upgrade defectlens"
        )
    if checkpoint["defectlens_version"] != __version__:
        logger.warning("checkpoint %s was written by defectlens %s", path, checkpoint["defectlens_version"])
    return checkpoint


def restore_weights(module: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> nn.Module:
    """`module` with the checkpoint's weights loaded.

    Raises:
        CheckpointError: the saved tensors are missing, unexpected or mis-shaped for `module`.
    """
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        message = f"checkpoint {path}: the saved weights do not fit its settings: {error}"
        raise CheckpointError(message) from error
    return module


def warn_refit(path: str | Path, checkpoint: dict[str, Any], what: str) -> None:
    """Log that a checkpoint from an older defectlens keeps an outdated calibration (`what`)."""
    logger.warning(
        "checkpoint %s keeps the threshold its defectlens %s set %s: fit it again for held-out or "
        "out-of-fold calibration and a false-reject-rate operating point",
        path,
        checkpoint["defectlens_version"],
        what,
    )
