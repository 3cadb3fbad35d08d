"""The inspection station: an HTTP service over a run or an exported model, with micro-batching."""

from defectlens.serve.app import Limits, ServedModel, create_app, open_served_model
from defectlens.serve.batching import MicroBatcher, ServiceBusy

__all__ = ["Limits", "MicroBatcher", "ServedModel", "ServiceBusy", "create_app", "open_served_model"]
