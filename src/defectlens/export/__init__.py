"""Export fitted detectors to ONNX, OpenVINO IR or TorchScript (run them with `defectlens.inference`)."""

from defectlens._lazy import lazy_exports

__all__ = ["export_detector", "export_run"]
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "defectlens.export.exporter"))
