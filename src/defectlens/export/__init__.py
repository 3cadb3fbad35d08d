"""Export fitted detectors to ONNX, OpenVINO IR or TorchScript (run them with `defectlens.inference`)."""

from defectlens.export.exporter import export_detector, export_run

__all__ = ["export_detector", "export_run"]
