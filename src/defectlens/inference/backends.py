"""Runtimes that execute an exported graph: images (B, 3, H, W) float32 in [0, 1] -> (scores, maps).

Each backend is one small class with `__call__`; the runtime libraries are imported only when a
backend is built, so an install without OpenVINO (or without torch) still runs the others.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from defectlens.errors import CheckpointError, ConfigError
from defectlens.inference.artifact import INPUT_NAME, OUTPUT_NAMES

BACKENDS = ("onnxruntime", "openvino", "torchscript")
# Which backends can open which exported format (OpenVINO reads ONNX files directly).
READS = {"onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",), "torchscript": ("torchscript",)}


def _threads(threads: int | None) -> int:
    return threads or len(os.sched_getaffinity(0))


class OnnxRuntimeBackend:
    """onnxruntime on the CPU."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads(threads)
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for a bad file
            raise CheckpointError(f"onnxruntime cannot load {path}: {error}") from error

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, maps = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return scores, maps


class OpenVinoBackend:
    """OpenVINO on the CPU, in float32 so that scores match the torch model."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import openvino

        core = openvino.Core()
        config = {
            "INFERENCE_NUM_THREADS": _threads(threads),
            "INFERENCE_PRECISION_HINT": "f32",  # no silent bf16 on CPUs that have it
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long C++ traces
            raise CheckpointError(f"OpenVINO cannot load {path}: {str(error).splitlines()[0]}") from error
        self.request = self.compiled.create_infer_request()

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = self.request.infer({INPUT_NAME: images})
        by_name = {output.get_any_name(): value for output, value in results.items()}
        return np.asarray(by_name[OUTPUT_NAMES[0]]), np.asarray(by_name[OUTPUT_NAMES[1]])


class TorchScriptBackend:
    """A TorchScript module (needs torch, but not defectlens' training code)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        try:
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as error:  # torch.jit raises RuntimeError with C++ context
            raise CheckpointError(f"torch.jit cannot load {path}: {str(error).splitlines()[0]}") from error
        self.torch = torch

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            scores, maps = self.module(self.torch.from_numpy(images))
        return scores.numpy(), maps.numpy()


_CLASSES = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend, "torchscript": TorchScriptBackend}
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torchscript": "torch"}


def available_backends() -> list[str]:
    """Backends whose runtime library is installed."""
    return [name for name in BACKENDS if importlib.util.find_spec(_MODULES[name]) is not None]


def open_backend(
    path: Path, artefact_format: str, backend: str = "auto", threads: int | None = None
) -> tuple[str, object]:
    """Build the backend that runs `path`: `auto` picks the native one for the format.

    Raises:
        ConfigError: unknown backend, one that cannot read the format, or its library is missing.
        CheckpointError: the runtime cannot load the file.
    """
    readers = READS[artefact_format]
    if backend == "auto":
        backend = readers[0]
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be 'auto' or one of {list(BACKENDS)}, got '{backend}'")
    if backend not in readers:
        raise ConfigError(
            f"backend '{backend}' cannot run a {artefact_format} export; use one of {list(readers)}"
        )
    if importlib.util.find_spec(_MODULES[backend]) is None:
        raise ConfigError(
            f"backend '{backend}' needs the '{_MODULES[backend]}' package: pip install "
            f"{'defectlens[export]' if backend != 'torchscript' else 'torch'}"
        )
    return backend, _CLASSES[backend](path, threads)
