"""Reduced-precision exports: FP16 weights and INT8 post-training quantisation.

INT8 quantises the convolutions with learned weights, i.e. the networks of every exportable detector, by
OpenVINO NNCF's post-training quantisation calibrated on good images: on the ONNX graph for ONNX (a QDQ
model that ONNX Runtime runs in int8) and on the OpenVINO model for OpenVINO IR. ONNX Runtime's own static
quantisation was measured too: it lost 0.05-0.06 image AUROC on MTD, NNCF 0.003 (docs/benchmarks.md).
Two kinds of operation stay float32:
- everything that is not a convolution, above all the scoring heads (PatchCore's nearest-neighbour search,
  PaDiM's Mahalanobis distances), where an int8 difference of large, nearly equal distances would decide
  the score;
- convolutions whose kernel is fixed in the graph, i.e. the Gaussian smoothing of anomaly maps: their input
  is an anomaly score, whose range on defective images lies far beyond anything calibration on good
  images sees, so int8 would clip every defect to the same score (measured: every image scored alike).

FP16 stores the weights in half precision, halving the file, and the runtimes compute in float32 as for
fp32. Computing in FP16 overflowed: PaDiM's squared Mahalanobis distances exceed FP16's largest value
(65504): on a CPU with AVX512-FP16, OpenVINO's FP16 inference scored the unit tests' defective images inf.
Weights beyond that range stay float32.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from defectlens.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
AUROC_TOLERANCE = 0.005  # the largest image AUROC change a reduced-precision export may make
CALIBRATION_IMAGES = 300  # good images whose activations set the INT8 ranges (NNCF's default subset)
# The operation types quantised to int8, as ONNX and OpenVINO name them; all others stay float.
ONNX_CONVOLUTIONS = ("Conv",)
OPENVINO_CONVOLUTIONS = ("Convolution", "GroupConvolution")
FP16_MIN_SIZE = 16  # smaller weights (scalars, shapes) stay float32: halving them saves nothing


def _nncf():
    try:
        import nncf
    except ImportError as error:
        raise ConfigError("an INT8 export needs the nncf package: pip install defectlens[int8]") from error
    nncf.set_log_level(logging.WARNING)  # not a line per operation it leaves in float
    return nncf


def fixed_kernel_convolutions(model) -> dict[str, str]:
    """Conv nodes of an `onnx.ModelProto` whose kernel is not a stored weight: node name -> output."""
    weights = {tensor.name for tensor in model.graph.initializer}
    return {
        node.name: node.output[0]
        for node in model.graph.node
        if node.op_type in ONNX_CONVOLUTIONS and node.input[1] not in weights
    }


def quantize_onnx(fp32: Path, out: Path, calibration: Sequence[np.ndarray], input_name: str) -> None:
    """Write `out`, the int8 (QDQ) version of ONNX model `fp32`, calibrated on image batches."""
    import onnx

    nncf = _nncf()
    model = onnx.load(str(fp32))
    other_types = {node.op_type for node in model.graph.node} - set(ONNX_CONVOLUTIONS)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(list(calibration), lambda batch: {input_name: batch}),
        subset_size=len(calibration),  # NNCF counts dataset items, here batches
        ignored_scope=nncf.IgnoredScope(
            names=list(fixed_kernel_convolutions(model)), types=sorted(other_types), validate=False
        ),
        # NNCF's ONNX bias correction fails on a Gemm of two activations (PatchCore's search); on PaDiM it
        # changed no score at 128 px on MTD (measured 2026-12-03).
        advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True),
    )
    onnx.save(quantized, str(out))


def quantize_openvino(model, source: Path, calibration: Sequence[np.ndarray]):
    """The int8 version of `openvino.Model` `model`, converted from ONNX file `source`, calibrated on
    image batches."""
    import onnx

    nncf = _nncf()
    # OpenVINO renames the convolutions it fuses with batch norms but keeps the ONNX tensor names, by
    # which the fixed-kernel ones are found.
    fixed = set(fixed_kernel_convolutions(onnx.load(str(source))).values())
    keep_float = [
        op.get_friendly_name()
        for op in model.get_ops()
        if any(output.get_names() & fixed for output in op.outputs())
    ]
    other_types = {op.get_type_name() for op in model.get_ops()} - set(OPENVINO_CONVOLUTIONS)
    return nncf.quantize(
        model,
        nncf.Dataset(list(calibration)),
        subset_size=len(calibration),  # NNCF counts dataset items, here batches
        ignored_scope=nncf.IgnoredScope(names=keep_float, types=sorted(other_types), validate=False),
    )


def fp16_onnx(fp32: Path, out: Path) -> None:
    """Write `out` with float16 weights, each cast to float32 in the graph, so computation stays float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(fp32))
    casts = []
    for tensor in model.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        if values.size < FP16_MIN_SIZE or np.abs(values).max() > np.finfo(np.float16).max:
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float16), f"{name}.fp16"))
        casts.append(
            helper.make_node("Cast", [f"{name}.fp16"], [name], name=f"{name}.to_fp32", to=TensorProto.FLOAT)
        )
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out))
