"""Run exported detectors without torch: onnxruntime or OpenVINO, the same pre- and post-processing."""

from defectlens.inference.artifact import FORMATS, MANIFEST, Manifest
from defectlens.inference.backends import BACKENDS, available_backends
from defectlens.inference.inferencer import Inferencer, iter_images

__all__ = ["BACKENDS", "FORMATS", "MANIFEST", "Inferencer", "Manifest", "available_backends", "iter_images"]
