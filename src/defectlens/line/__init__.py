"""The station on the line: sources (a folder, a camera), sinks (MQTT, webhooks, a folder), drift.

`defectlens watch` scores what a source delivers and publishes each result; `defectlens serve` publishes
to the same sinks. Nothing here imports torch: a station runs an exported model without it.
"""

from defectlens.line.drift import DriftLevels, DriftMonitor
from defectlens.line.sinks import ConsoleSink, FolderSink, MqttSink, Result, Sink, WebhookSink, open_sinks
from defectlens.line.sources import FolderSource, Part, VideoSource, open_source
from defectlens.line.station import Outputs, Station
from defectlens.line.store import StationStore

__all__ = [
    "ConsoleSink",
    "DriftLevels",
    "DriftMonitor",
    "FolderSink",
    "FolderSource",
    "MqttSink",
    "Outputs",
    "Part",
    "Result",
    "Sink",
    "Station",
    "StationStore",
    "VideoSource",
    "WebhookSink",
    "open_sinks",
    "open_source",
]
