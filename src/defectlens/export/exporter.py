"""Export a fitted detector to ONNX, OpenVINO IR or TorchScript, with its manifest.

The exported graph is the detector's own torch module: images (B, 3, H, W) float32 in [0, 1] ->
raw scores (B,) and raw anomaly maps (B, H, W). The backbone's mean/std normalisation, PatchCore's
memory bank and PaDiM's Gaussians are inside the graph; resizing and the calibration (thresholds,
score normalisation) are in the manifest and applied by `defectlens.inference` exactly as in torch.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from defectlens import __version__
from defectlens.data.datasets import Record
from defectlens.data.inputs import as_dataset, loader
from defectlens.engine.runs import CHECKPOINT, RunInfo, prepare_output
from defectlens.errors import CheckpointError, ConfigError, DefectlensError
from defectlens.export.precision import (
    AUROC_TOLERANCE,
    CALIBRATION_IMAGES,
    PRECISIONS,
    fp16_onnx,
    quantize_onnx,
    quantize_openvino,
)
from defectlens.inference.artifact import FORMATS, INPUT_NAME, OUTPUT_NAMES, Manifest
from defectlens.inference.backends import open_backend
from defectlens.metrics import image_auroc
from defectlens.models import Detector, load
from defectlens.models.registry import detector_class, list_detectors

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
PARITY_TOLERANCE = 1e-3  # on normalised scores, whose threshold sits at 0.5


def export_run(
    run: str | Path,
    out: str | Path,
    format: str = "onnx",
    force: bool = False,
    precision: str = "fp32",
    auroc_tolerance: float = AUROC_TOLERANCE,
) -> Path:
    """Export the detector of run folder `run` (see `export_detector`).

    A reduced-precision export is calibrated on the run's good training images and checked on its
    labelled test images.

    Raises:
        CheckpointError: `run` is not a run folder with a model checkpoint.
        ConfigError: a reduced precision, and the run's data has no good and defective test images.
    """
    run = Path(run)
    if not (run / CHECKPOINT).is_file():
        raise CheckpointError(f"no trained model to export: {run / CHECKPOINT} does not exist")
    detector = load(run / CHECKPOINT)
    if precision == "fp32":
        return export_detector(detector, out, format, force)
    data = RunInfo.load(run).data
    splits = data.load()
    return export_detector(
        detector,
        out,
        format,
        force,
        precision=precision,
        calibration=splits.train + splits.val,
        check=splits.test,
        auroc_tolerance=auroc_tolerance,
        check_source=data.describe(),
    )


def export_detector(
    detector: Detector,
    out: str | Path,
    format: str = "onnx",
    force: bool = False,
    precision: str = "fp32",
    calibration: Sequence[Record | np.ndarray] | None = None,
    check: Sequence[Record] | None = None,
    auroc_tolerance: float = AUROC_TOLERANCE,
    check_source: str = "the check images",
) -> Path:
    """Write `detector` as a self-contained artefact folder and check it against the torch model.

    A float32 export must give the torch model's normalised scores to within 1e-3. A reduced-precision
    one cannot, so it is checked where it matters: its image AUROC on labelled images must stay within
    `auroc_tolerance` of the torch model's. An export that fails its check is deleted and refused.

    Args:
        detector: a fitted detector.
        out: folder to create; an existing non-empty one is replaced only with `force`.
        format: "onnx", "openvino" or "torchscript".
        precision: "fp32", "fp16" (half-precision weights) or "int8" (quantised convolutions); the reduced
            precisions are for onnx and openvino.
        calibration: good images (records or uint8 arrays) whose activations set the INT8 ranges; up to
            300, spread over the list, are used.
        check: labelled images, good and defective, for the AUROC check of a reduced precision.
        auroc_tolerance: the largest image AUROC change a reduced precision may make.
        check_source: what `check` is, for messages.

    Returns:
        The artefact folder.

    Raises:
        ConfigError: unknown format or precision, `out` exists without `force`, the detector cannot be
            exported, or a reduced precision lacks its calibration or check images.
        NotFittedError: the detector is not fitted.
        DefectlensError: the exported model disagrees with the torch model.
    """
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)}, got '{format}'")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got '{precision}'")
    if not 0 <= auroc_tolerance <= 1:
        raise ConfigError(f"auroc_tolerance must be in [0, 1], got {auroc_tolerance}")
    if precision != "fp32" and format == "torchscript":
        raise ConfigError(
            f"a {precision} export needs --format onnx or openvino; torchscript is float32 only"
        )
    detector.check_is_fitted()
    if not detector.exportable:
        raise ConfigError(
            f"{detector.name} cannot be exported: its scoring is not a fixed graph of tensor operations "
            f"(it optimises at inference time); the models that export are "
            f"{[name for name in list_detectors() if detector_class(name).exportable]}"
        )
    check_set = _check_set(check, precision, check_source) if precision != "fp32" else None
    calibration_batches = (
        list(_image_batches(detector, _spread(calibration, CALIBRATION_IMAGES)))
        if precision == "int8"
        else []
    )
    out = prepare_output(Path(out), force, "export folder")
    try:
        report = _write_and_check(
            detector, out, format, precision, calibration_batches, check_set, auroc_tolerance
        )
    except BaseException:
        shutil.rmtree(out)  # a refused or half-written export must not be deployed by mistake
        raise
    report["source"] = check_source if check_set is not None else "random batch"
    Manifest(
        detector=detector.name,
        params=detector.get_params(),
        format=format,
        precision=precision,
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
        check=report,
        defectlens_version=__version__,
    ).save(out)
    logger.info("exported %s as %s (%s) to %s", detector.name, format, precision, out)
    return out


def _write_and_check(
    detector: Detector,
    out: Path,
    format: str,
    precision: str,
    calibration_batches: list[np.ndarray],
    check_set: tuple[Sequence[Record], np.ndarray] | None,
    auroc_tolerance: float,
) -> dict:
    """Write the graph into `out` and check it against the torch module; returns the check's report."""
    module = detector.export_module()
    # Traced at the detector's batch size: a graph that tiles its work (PatchCore's search) tiles for it.
    example = torch.rand(
        detector.batch_size, 3, *detector.input_resize.size, generator=torch.Generator().manual_seed(0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints: shapes here are fixed by design
        if format == "onnx":
            _to_onnx(module, example, out / "model.onnx", precision, calibration_batches)
        elif format == "openvino":
            _to_onnx(module, example, out / "intermediate.onnx")
            _onnx_to_openvino(out / "intermediate.onnx", out, precision, calibration_batches)
        else:
            with torch.inference_mode():
                traced = torch.jit.trace(module, example, check_trace=False)
            traced.save(str(out / "model.ts"))
    _, run_export = open_backend(out / FORMATS[format][0], format)
    if check_set is None:
        return _check_parity(detector, module, example, run_export)
    return _check_auroc(detector, module, run_export, *check_set, auroc_tolerance)


def _spread(records: Sequence[Record | np.ndarray] | None, limit: int) -> list:
    """At most `limit` calibration images, evenly spread over the list (often ordered by time or type)."""
    if not records:
        raise ConfigError("an INT8 export needs good calibration images; none were given")
    picks = np.unique(np.linspace(0, len(records) - 1, min(limit, len(records))).round().astype(int))
    return [records[i] for i in picks]


def _image_batches(detector: Detector, records: Sequence[Record | np.ndarray]) -> Iterator[np.ndarray]:
    """The images decoded and resized as the detector sees them, batch by batch."""
    dataset = as_dataset(list(records), detector.input_resize)
    return (batch.images.numpy() for batch in loader(dataset, detector.batch_size))


def _check_set(
    check: Sequence[Record] | None, precision: str, source: str
) -> tuple[Sequence[Record], np.ndarray]:
    labels = np.array([record.label for record in check or []])
    if not ((labels == 0).any() and (labels == 1).any()):
        raise ConfigError(
            f"a {precision} export is checked by its image AUROC, which needs good and defective images; "
            f"{source} has {int((labels == 0).sum())} good and {int((labels == 1).sum())} defective "
            "(export in fp32, or train on data with a labelled test split)"
        )
    known = labels >= 0
    return [record for record, keep in zip(check, known, strict=True) if keep], labels[known]


def _to_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    precision: str = "fp32",
    calibration: Sequence[np.ndarray] = (),
) -> None:
    batch = {0: "batch"}
    fp32 = path if precision == "fp32" else path.with_name("fp32.onnx")
    torch.onnx.export(
        module,
        (example,),
        str(fp32),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: batch, OUTPUT_NAMES[0]: batch, OUTPUT_NAMES[1]: batch},
        opset_version=ONNX_OPSET,
        dynamo=False,  # the TorchScript-based exporter: faster here and exact for these graphs
        # Folding would store a copy of a buffer per slice taken of it (PatchCore's bank blocks: 3x the
        # file); ONNX Runtime and OpenVINO fold constants themselves when they load a model.
        do_constant_folding=False,
    )
    if precision == "int8":
        quantize_onnx(fp32, path, calibration, INPUT_NAME)
    elif precision == "fp16":
        fp16_onnx(fp32, path)
    if fp32 != path:
        fp32.unlink()


def _onnx_to_openvino(onnx_path: Path, out: Path, precision: str, calibration: Sequence[np.ndarray]) -> None:
    """Convert a float32 ONNX file to OpenVINO IR `out/model.xml` at `precision`; the ONNX file is removed."""
    try:
        import openvino
    except ImportError as error:
        raise ConfigError(
            "exporting to OpenVINO needs the openvino package: pip install defectlens[export]"
        ) from error
    model = openvino.convert_model(str(onnx_path))
    if precision == "int8":
        model = quantize_openvino(model, onnx_path, calibration)
    # float32 weights unless asked for fp16: the parity check holds float32 exports to torch's scores
    openvino.save_model(model, str(out / "model.xml"), compress_to_fp16=precision == "fp16")
    onnx_path.unlink()


def _paired_scores(
    module: torch.nn.Module, run_export, batches: Iterable[np.ndarray]
) -> tuple[np.ndarray, ...]:
    """Raw image scores of the torch module and of the export on the same batches, one batch at a time."""
    pairs = []
    with torch.inference_mode():
        for batch in batches:
            exported = np.asarray(run_export(np.ascontiguousarray(batch))[0], np.float32)
            pairs.append((module(torch.from_numpy(batch))[0].numpy(), exported))
    return tuple(np.concatenate(scores) for scores in zip(*pairs, strict=True))


def _check_parity(detector: Detector, module: torch.nn.Module, example: torch.Tensor, run_export) -> dict:
    """Run the artefact and the torch module on the same batch; refuse an export that disagrees."""
    normalise = detector.calibration.normalizer.transform
    torch_scores, exported_scores = _paired_scores(module, run_export, [example.numpy()])
    difference = float(np.abs(normalise(torch_scores) - normalise(exported_scores)).max())
    if not difference <= PARITY_TOLERANCE:
        raise DefectlensError(
            f"the exported model disagreed with the torch model and was not written: normalised scores "
            f"differ by {difference:.2g} (> {PARITY_TOLERANCE}); please report this with the run's settings"
        )
    logger.info("export check: normalised scores within %.2g of torch", difference)
    return {"images": len(example), "max_normalized_score_difference": difference}


def _check_auroc(
    detector: Detector,
    module: torch.nn.Module,
    run_export,
    records: Sequence[Record],
    labels: np.ndarray,
    tolerance: float,
) -> dict:
    """Image AUROC of the export against the torch model's on labelled images; refuse a larger change."""
    # Streamed: a check set of thousands of images is never held in memory at once.
    torch_scores, exported_scores = _paired_scores(module, run_export, _image_batches(detector, records))
    overflowed = int((~np.isfinite(exported_scores)).sum())
    if overflowed:
        raise DefectlensError(
            f"the reduced-precision export was refused and not written: it scored {overflowed} of "
            f"{len(records)} labelled images as NaN or inf (beyond the precision's range); export in fp32"
        )
    normalise = detector.calibration.normalizer.transform
    report = {
        "images": len(records),
        "max_normalized_score_difference": float(
            np.abs(normalise(torch_scores) - normalise(exported_scores)).max()
        ),
        "image_auroc_fp32": image_auroc(labels, torch_scores),
        "image_auroc": image_auroc(labels, exported_scores),
        "auroc_tolerance": tolerance,
    }
    change = report["image_auroc"] - report["image_auroc_fp32"]
    if not abs(change) <= tolerance:
        raise DefectlensError(
            f"the reduced-precision export was refused and not written: its image AUROC on "
            f"{len(records)} labelled images is {report['image_auroc']:.4f} against the float32 model's "
            f"{report['image_auroc_fp32']:.4f} (change {change:+.4f}, tolerance {tolerance}); export in fp32"
            f" or fp16, or allow a larger change with --auroc-tolerance"
        )
    logger.info(
        "export check: image AUROC %.4f (float32 %.4f) on %d labelled images",
        report["image_auroc"],
        report["image_auroc_fp32"],
        len(records),
    )
    return report
