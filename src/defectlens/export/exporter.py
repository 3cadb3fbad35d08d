"""Export a fitted detector to ONNX, OpenVINO IR or TorchScript, with its manifest.

The exported graph is the detector's own torch module: images (B, 3, H, W) float32 in [0, 1] ->
raw scores (B,) and raw anomaly maps (B, H, W). The backbone's mean/std normalisation, PatchCore's
memory bank and PaDiM's Gaussians are inside the graph; resizing and the calibration (thresholds,
score normalisation) are in the manifest and applied by `defectlens.inference` exactly as in torch.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from defectlens import __version__
from defectlens.engine.runs import CHECKPOINT, prepare_output
from defectlens.errors import CheckpointError, ConfigError, DefectlensError
from defectlens.inference.artifact import FORMATS, INPUT_NAME, OUTPUT_NAMES, Manifest
from defectlens.inference.inferencer import Inferencer
from defectlens.models import Detector, load
from defectlens.models.registry import detector_class, list_detectors

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-3  # on normalised scores, whose threshold sits at 0.5


def export_run(run: str | Path, out: str | Path, format: str = "onnx", force: bool = False) -> Path:
    """Export the detector of run folder `run` (see `export_detector`).

    Raises:
        CheckpointError: `run` is not a run folder with a model checkpoint.
    """
    run = Path(run)
    if not (run / CHECKPOINT).is_file():
        raise CheckpointError(f"no trained model to export: {run / CHECKPOINT} does not exist")
    return export_detector(load(run / CHECKPOINT), out, format, force)


def export_detector(detector: Detector, out: str | Path, format: str = "onnx", force: bool = False) -> Path:
    """Write `detector` as a self-contained artefact folder and check it against the torch model.

    Args:
        detector: a fitted detector.
        out: folder to create; an existing non-empty one is replaced only with `force`.
        format: "onnx", "openvino" or "torchscript".

    Returns:
        The artefact folder.

    Raises:
        ConfigError: unknown format, `out` exists without `force`, or the detector cannot be exported.
        NotFittedError: the detector is not fitted.
        DefectlensError: the exported model disagrees with the torch model.
    """
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)}, got '{format}'")
    detector.check_is_fitted()
    if not detector.exportable:
        raise ConfigError(
            f"{detector.name} cannot be exported: its scoring is not a fixed graph of tensor operations "
            f"(it optimises at inference time); the models that export are "
            f"{[name for name in list_detectors() if detector_class(name).exportable]}"
        )
    out = prepare_output(Path(out), force, "export folder")
    module = detector.export_module()
    # Traced at the detector's batch size: a graph that tiles its work (PatchCore's search) tiles for it.
    example = torch.rand(
        detector.batch_size, 3, *detector.input_resize.size, generator=torch.Generator().manual_seed(0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints: shapes here are fixed by design
        if format == "onnx":
            _to_onnx(module, example, out / "model.onnx")
        elif format == "openvino":
            _to_openvino(module, example, out)
        else:
            with torch.inference_mode():
                traced = torch.jit.trace(module, example, check_trace=False)
            traced.save(str(out / "model.ts"))
    Manifest(
        detector=detector.name,
        params=detector.get_params(),
        format=format,
        input={
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "size": list(detector.input_resize.size),
            "resize": detector.input_resize.mode,
            "range": [0.0, 1.0],
            "normalization": "pixel / 255 only; the backbone's mean/std are applied inside the graph",
        },
        calibration=detector.calibration.to_dict(),
        defectlens_version=__version__,
    ).save(out)
    _check_parity(detector, module, example, out)
    logger.info("exported %s as %s to %s", detector.name, format, out)
    return out


def _to_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = {0: "batch"}
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: batch, OUTPUT_NAMES[0]: batch, OUTPUT_NAMES[1]: batch},
        opset_version=ONNX_OPSET,
        dynamo=False,  # the TorchScript-based exporter: faster here and exact for these graphs
        # Folding would store a copy of a buffer per slice taken of it (PatchCore's bank blocks: 3x the
        # file); ONNX Runtime and OpenVINO fold constants themselves when they load the model.
        do_constant_folding=False,
    )


def _to_openvino(module: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    try:
        import openvino
    except ImportError as error:
        raise ConfigError(
            "exporting to OpenVINO needs the openvino package: pip install defectlens[export]"
        ) from error
    onnx_path = out / "intermediate.onnx"
    _to_onnx(module, example, onnx_path)
    model = openvino.convert_model(str(onnx_path))
    openvino.save_model(model, str(out / "model.xml"), compress_to_fp16=False)  # keep float32 for parity
    onnx_path.unlink()


def _check_parity(detector: Detector, module: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """Run the artefact and the torch module on the same batch; refuse an export that disagrees."""
    with torch.inference_mode():
        torch_scores, _ = module(example)
    exported_scores, _ = Inferencer(out).score_batch(example.numpy())
    normalise = detector.calibration.normalizer.transform
    difference = float(np.abs(normalise(torch_scores.numpy()) - normalise(exported_scores)).max())
    if not difference <= PARITY_TOLERANCE:
        raise DefectlensError(
            f"the exported model in {out} disagrees with the torch model: normalised scores differ by "
            f"{difference:.2g} (> {PARITY_TOLERANCE}); please report this with the run's settings"
        )
    logger.info("export check: normalised scores within %.2g of torch", difference)
