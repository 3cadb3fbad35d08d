"""One process, one run: the bare backbone, PaDiM and PatchCore's searches, in torch and in every export
format and precision, against the bare backbone's throughput, with the accuracy each variant keeps.

For each saved detector this builds its variants first (exports in a temporary folder), then times them
interleaved, `--repeats` rounds over all variants, keeping each one's best round, so that a slow moment of
the machine does not favour one of them:

- the bare backbone: the detector's own frozen feature extractor (its layers), nothing after it;
- the detector in torch, TorchScript, ONNX Runtime and OpenVINO; PatchCore once per `--searches`
  ("ivf" runs in torch only: exports replace faiss with exact search);
- the ONNX Runtime and OpenVINO exports at each of `--precisions` (the backbone too).

Throughput is model only: images already decoded and resized, batches of `--batch-size`, one warm-up
batch. "share" is a variant's throughput over its bare backbone's in the same runtime and precision.
Accuracy (image AUROC, pixel AUROC, AUPRO) is measured on all test images in torch for each search; a
float32 export matches torch to within 1e-3 in normalised score (the exporter's parity check, whose
figure is shown), and a reduced-precision one is checked by the exporter on all test images (its image
AUROC is shown; an export that moves it by more than 0.005 is refused, and its row says so).

    python benchmarks/speed.py runs/bench/magnetic_tile-padim.pt runs/bench/magnetic_tile-patchcore.pt \\
        --data ../shared/data/mtd/magnetic_tile --precisions fp32 int8 --out docs/raw/speed
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine

from defectlens.data import load_mvtec
from defectlens.data.inputs import as_dataset, loader
from defectlens.engine import score_records
from defectlens.errors import DefectlensError
from defectlens.export import export_detector
from defectlens.export.precision import quantize_onnx, quantize_openvino
from defectlens.inference import Inferencer, Manifest
from defectlens.inference.artifact import INPUT_NAME, OUTPUT_NAMES
from defectlens.inference.backends import OnnxRuntimeBackend, OpenVinoBackend
from defectlens.models import load
from defectlens.models.tiling import tile_module_of

EXPORTS = (("torchscript", "torchscript"), ("onnx", "onnxruntime"), ("openvino", "openvino"))
BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}


@dataclass
class Variant:
    model: str
    search: str
    runtime: str
    precision: str
    score: Callable[[np.ndarray], object]
    batches: list[np.ndarray]
    accuracy: dict = field(default_factory=dict)
    note: str = ""
    img_s: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.runtime, self.precision


class BareBackbone(torch.nn.Module):
    """The extractor alone, with two cheap reductions as the (score, map) outputs the backends expect."""

    def __init__(self, extractor: torch.nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extractor(images)
        return features[-1].mean((1, 2, 3)), features[0].mean(1)


def throughput(score: Callable[[np.ndarray], object], batches: list[np.ndarray]) -> float:
    score(batches[0])  # warm-up: lazy allocations, kernel selection
    start = time.perf_counter()
    for batch in batches:
        score(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def torch_scorer(module: Callable) -> Callable[[np.ndarray], object]:
    def score(batch: np.ndarray) -> object:
        with torch.inference_mode():
            return module(torch.from_numpy(batch))

    return score


def backbone_variants(
    name: str,
    extractor: torch.nn.Module,
    batches: list[np.ndarray],
    precisions: list[str],
    folder: Path,
    threads: int,
) -> list[Variant]:
    """The bare backbone in torch, and in ONNX Runtime and OpenVINO at each precision."""
    import onnx  # noqa: F401 (quantize_onnx needs it; fail here, before any timing)
    import openvino

    module = BareBackbone(extractor).eval()
    variants = [Variant(name, "backbone", "torch", "fp32", torch_scorer(module), batches)]
    fp32 = folder / f"{name}-backbone.onnx"
    torch.onnx.export(
        module,
        (torch.from_numpy(batches[0]),),
        str(fp32),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAMES[0]: {0: "batch"}, OUTPUT_NAMES[1]: {0: "batch"}},
        dynamo=False,
    )
    for precision in precisions:
        onnx_path, ir_path = fp32, fp32
        if precision == "int8":
            onnx_path = folder / f"{name}-backbone-int8.onnx"
            quantize_onnx(fp32, onnx_path, batches, INPUT_NAME)
            ir_path = folder / f"{name}-backbone-int8.xml"
            openvino.save_model(
                quantize_openvino(openvino.convert_model(str(fp32)), fp32, batches), str(ir_path)
            )
        elif precision != "fp32":
            continue  # fp16 stores half weights and computes in float32: the backbone's speed is fp32's
        for runtime, path in (("onnxruntime", onnx_path), ("openvino", ir_path)):
            backend = BACKENDS[runtime](path, threads)
            variants.append(Variant(name, "backbone", runtime, precision, backend, batches))
    return variants


def detector_variants(
    checkpoint: Path, splits, precisions: list[str], searches: list[str], args, folder: Path
) -> list[Variant]:
    detector = load(checkpoint)
    detector.device = "cpu"
    test = splits.test[: args.images]
    batches = [b.images.numpy() for b in loader(as_dataset(test, detector.input_resize), args.batch_size)]
    name = detector.name
    variants = backbone_variants(
        name, tile_module_of(detector.module_).extractor, batches, precisions, folder, args.threads
    )
    for search in searches if "search" in detector.param_names() else [None]:
        variant = copy.deepcopy(detector)
        if search is not None:
            variant.search = search
            tile_module_of(variant.module_).search = search
        label = search or "–"
        result = score_records(variant, splits.test).evaluate(variant.calibration.image_threshold)
        accuracy = {k: result[k] for k in ("image_auroc", "pixel_auroc", "aupro")}
        variants.append(
            Variant(
                name, label, "torch", "fp32", lambda x, v=variant: v.score_batch(torch.from_numpy(x)), batches
            )
        )
        variants[-1].accuracy = accuracy
        if search == "ivf":
            continue  # an export searches exactly: the exact rows time it
        for fmt, runtime in EXPORTS:
            for precision in precisions if fmt != "torchscript" else ["fp32"]:
                out = folder / f"{name}-{label}-{fmt}-{precision}"
                try:
                    export_detector(
                        variant,
                        out,
                        fmt,
                        precision=precision,
                        calibration=splits.train + splits.val,
                        check=splits.test,
                    )
                except DefectlensError as error:  # a refused export is a result too
                    refused = Variant(
                        name, label, runtime, precision, None, batches, note=f"refused: {error}"
                    )
                    variants.append(refused)
                    continue
                check = Manifest.load(out).check
                row = Variant(
                    name,
                    label,
                    runtime,
                    precision,
                    Inferencer(out, backend=runtime, threads=args.threads).score_batch,
                    batches,
                )
                if precision == "fp32":
                    row.accuracy = accuracy
                    row.note = (
                        f"parity: max normalised score diff {check['max_normalized_score_difference']:.1e}"
                    )
                else:
                    row.accuracy = {"image_auroc": check["image_auroc"]}
                    row.note = f"float32 image AUROC {check['image_auroc_fp32']:.4f}"
                variants.append(row)
    return variants


def table(variants: list[Variant]) -> list[str]:
    bare = {(v.model, *v.key): v.img_s for v in variants if v.search == "backbone"}
    lines = [
        "| model | search | runtime | precision | img/s | share of its bare backbone | image AUROC "
        "| pixel AUROC | AUPRO | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        base = bare.get((v.model, *v.key))
        share = f"{v.img_s / base:.0%}" if base and v.img_s and v.search != "backbone" else "–"
        speed = f"{v.img_s:.1f}" if v.img_s else "–"
        metrics = [
            f"{v.accuracy[k]:.4f}" if k in v.accuracy else "–"
            for k in ("image_auroc", "pixel_auroc", "aupro")
        ]
        lines.append(
            f"| {v.model} | {v.search} | {v.runtime} | {v.precision} | {speed} | {share} | "
            + " | ".join(metrics)
            + f" | {v.note} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path, help="saved detectors (model.pt)")
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout category with masks")
    parser.add_argument("--images", type=int, default=96, help="test images to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "fp16", "int8"])
    parser.add_argument("--searches", nargs="+", default=["exact", "refine", "ivf"])
    parser.add_argument("--out", type=Path, help="prefix of the .md and .jsonl files to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_mvtec(args.data)
    with tempfile.TemporaryDirectory() as folder:
        variants = []
        for checkpoint in args.checkpoints:
            variants += detector_variants(
                checkpoint, splits, args.precisions, args.searches, args, Path(folder)
            )
        timed = [v for v in variants if v.score is not None]
        for _ in range(args.repeats):
            for v in timed:
                v.img_s = max(v.img_s, throughput(v.score, v.batches))
    header = (
        f"Machine: {describe_machine()}, torch {torch.__version__}, {args.threads} threads, "
        f"batch {args.batch_size}, "
        f"{args.images} test images timed (best of {args.repeats} interleaved rounds), accuracy on all "
        f"{len(splits.test)} test images of {args.data.name}.\n"
    )
    lines = [header, *table(variants)]
    print("\n".join(lines))
    if args.out:
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
        with args.out.with_suffix(".jsonl").open("w") as handle:
            for v in variants:
                row = {
                    k: getattr(v, k)
                    for k in ("model", "search", "runtime", "precision", "img_s", "accuracy", "note")
                }
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
