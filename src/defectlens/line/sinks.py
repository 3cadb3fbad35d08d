"""Where the station's results go: an MQTT topic, a webhook, a folder.

MQTT and webhook messages are spooled in the station store before they are sent and deleted only once
delivered (an MQTT PUBACK, a 2xx answer), so nothing is lost while a broker or receiver is down, nor
across a restart; QoS 1 allows a message to arrive twice when a connection drops before its PUBACK.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import numpy as np

from defectlens.engine.predict import PICTURES, PREDICTIONS, PictureWriter
from defectlens.errors import ConfigError
from defectlens.line.store import StationStore
from defectlens.post.tasks import Regions

logger = logging.getLogger(__name__)

MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
# Unacknowledged MQTT messages held in memory; the rest wait in the spool on disk.
MAX_IN_FLIGHT = 1000
WEBHOOK_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 30.0


@dataclass
class Result:
    """One scored part: the published object, and what a folder sink draws (absent for a bad file)."""

    entry: dict[str, Any]
    image: np.ndarray | None = None
    heat: np.ndarray | None = None
    found: Regions | None = None


class Sink(Protocol):
    """A destination of results. A spooled sink sends from the store in its own thread."""

    name: str
    spooled: bool

    def write(self, result: Result) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class FolderSink:
    """Appends to `folder/predictions.jsonl` and writes masks and overlays, as `defectlens predict` does.

    It never overwrites: picture names are made unique among those already in the folder.
    """

    spooled = False

    def __init__(self, folder: str | Path, pictures: tuple[str, ...] = PICTURES) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"--out {self.folder} is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = str(self.folder)
        self._pictures = PictureWriter(self.folder, pictures, workers=1)
        self._lines = (self.folder / PREDICTIONS).open("a")

    def write(self, result: Result) -> None:
        entry = result.entry
        if result.heat is not None:
            entry = self._pictures.add(entry, result.image, result.heat, result.found)
        self._lines.write(json.dumps(entry) + "\n")
        self._lines.flush()

    def wake(self) -> None:
        """Nothing to do: lines are written at once, pictures by the writer's thread."""

    def close(self) -> None:
        self._pictures.close()
        self._lines.close()


class _SpooledSink:
    """Sends the store's messages for `name` from a worker thread, woken when new ones are queued."""

    spooled = True

    def __init__(self, name: str, store: StationStore) -> None:
        self.name, self.store = name, store
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def write(self, result: Result) -> None:
        """Nothing to do: the station queues the message in the store, and this sink sends it."""

    def wake(self) -> None:
        self._wake.set()

    def pending(self) -> int:
        return self.store.count_pending(self.name)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._send_pending()
            except Exception:  # a sink must outlive any one failure; the message stays spooled
                logger.exception("sink %s failed; retrying", self.name)
                self._stop.wait(1.0)

    def _send_pending(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)


class MqttSink(_SpooledSink):
    """Publishes each result as one JSON message on a topic, QoS 1, through `paho-mqtt`.

    Args:
        url: `mqtt://[user:password@]host[:port]/topic` (`mqtts://` for TLS).
        store: the spool.
    """

    def __init__(self, url: str, store: StationStore) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        topic = unquote(parts.path.lstrip("/"))
        if parts.scheme not in MQTT_SCHEMES or not parts.hostname or not topic:
            raise ConfigError(f"--mqtt must look like mqtt://HOST[:PORT]/TOPIC, got '{url}'")
        if "+" in topic or "#" in url:
            raise ConfigError(f"--mqtt topic '{topic}' holds a wildcard (+ or #): publish to a plain topic")
        try:
            port = parts.port or MQTT_SCHEMES[parts.scheme]
        except ValueError as error:
            raise ConfigError(f"--mqtt '{url}': {error}") from error
        super().__init__(f"{parts.scheme}://{parts.hostname}:{port}/{topic}", store)
        self.topic = topic
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._in_flight: dict[int, int] = {}  # MQTT message id -> spool id
        self._handed = 0  # highest spool id handed to paho in this process
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"defectlens-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self._client.tls_set()
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(parts.hostname, port, keepalive=30)
        self._client.loop_start()
        self.start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            logger.warning("MQTT %s refused the connection: %s", self.name, reason)
        else:
            logger.info("MQTT connected to %s", self.name)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        log = logger.warning if reason.is_failure else logger.info
        log("MQTT %s disconnected (%s); %d messages spooled", self.name, reason, self.pending())

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # Runs on paho's thread: hand the ack to the worker, which owns the bookkeeping.
        self._acks.put(mid)
        self._wake.set()

    def _send_pending(self) -> None:
        while not self._acks.empty():
            spool_id = self._in_flight.pop(self._acks.get(), None)
            if spool_id is not None:
                self.store.delivered(spool_id)
        # paho keeps every handed QoS 1 message until its PUBACK and resends it after a reconnect; it gets
        # each spooled message once per process, and only while connected, so a long outage stays on disk.
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0 or not self._client.is_connected():
            return
        for spool_id, payload in self.store.pending(self.name, self._handed, room):
            info = self._client.publish(self.topic, payload, qos=1)
            self._in_flight[info.mid] = spool_id
            self._handed = spool_id

    def close(self, drain_s: float = 5.0) -> None:
        """Stop after waiting up to `drain_s` for the PUBACKs of messages already sent."""
        deadline = time.monotonic() + drain_s
        while self._in_flight and time.monotonic() < deadline and self._client.is_connected():
            time.sleep(0.1)  # the worker turns PUBACKs into deliveries meanwhile
        super().close()
        self._client.disconnect()
        self._client.loop_stop()


class WebhookSink(_SpooledSink):
    """POSTs each result as JSON to a URL, in order, retrying with exponential backoff.

    A 2xx answer delivers a message. Connection errors, 408, 429 and 5xx are retried (waits of 0.5 s,
    doubling, at most 30 s); any other 4xx means the receiver refuses it: it is logged and dropped.
    """

    def __init__(self, url: str, store: StationStore) -> None:
        import httpx

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--webhook must be an http:// or https:// URL, got '{url}'")
        super().__init__(url, store)
        self._client = httpx.Client(timeout=WEBHOOK_TIMEOUT_S)
        self._http_error = httpx.HTTPError
        self._backoff = 0.0
        self.start()

    def _send_pending(self) -> None:
        while not self._stop.is_set():
            rows = self.store.pending(self.name, limit=1)
            if not rows:
                return
            spool_id, payload = rows[0]
            if self._post(payload):
                self.store.delivered(spool_id)
                self._backoff = 0.0
            else:
                self._backoff = min(MAX_BACKOFF_S, max(0.5, 2 * self._backoff))
                self._stop.wait(self._backoff)

    def _post(self, payload: str) -> bool:
        """True when the message is done with: delivered, or refused for good (logged)."""
        try:
            answer = self._client.post(
                self.name, content=payload, headers={"Content-Type": "application/json"}
            )
        except self._http_error as error:
            logger.warning("webhook %s: %s; retrying", self.name, error)
            return False
        if answer.is_success:
            return True
        if answer.status_code in (408, 429) or answer.status_code >= 500:
            logger.warning("webhook %s answered %d; retrying", self.name, answer.status_code)
            return False
        logger.error(
            "webhook %s refused a result with %d (%s); dropped: %s",
            self.name,
            answer.status_code,
            answer.text[:200],
            payload[:200],
        )
        return True

    def close(self) -> None:
        super().close()
        self._client.close()


class ConsoleSink:
    """One line per result on the terminal: name, label, score, latency."""

    spooled = False
    name = "console"

    def __init__(self, print_line: Any = print) -> None:
        self._print = print_line

    def write(self, result: Result) -> None:
        entry = result.entry
        if "error" in entry:
            self._print(f"{entry['path']}  error: {entry['error']}")
        else:
            latency = entry.get("timing", {}).get("latency_ms", float("nan"))
            self._print(f"{entry['path']}  {entry['label']}  score {entry['score']:.3f}  {latency:.0f} ms")

    def wake(self) -> None:
        """Nothing to do: printing is synchronous."""

    def close(self) -> None:
        """Nothing to release."""


def open_sinks(
    store: StationStore | None,
    mqtt: list[str] | None = None,
    webhook: list[str] | None = None,
    out: list[str | Path] | None = None,
) -> list[Sink]:
    """The sinks named on the command line; network sinks need `store` for their spool."""
    if (mqtt or webhook) and store is None:
        raise ConfigError("MQTT and webhook sinks need a state folder for their spool (--state)")
    sinks: list[Sink] = [FolderSink(folder) for folder in out or []]
    sinks += [MqttSink(url, store) for url in mqtt or []]
    sinks += [WebhookSink(url, store) for url in webhook or []]
    return sinks
