"""A real Mosquitto broker and subscriber on a loopback port, and a small exported model to score with."""

from __future__ import annotations

import collections
import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from defectlens.data import load_mvtec
from defectlens.export import export_detector

MOSQUITTO = next(
    (p for p in (shutil.which("mosquitto"), "/usr/sbin/mosquitto") if p and Path(p).exists()), None
)


class Broker:
    """Mosquitto on 127.0.0.1 with persistence, so that sessions and queued messages survive a restart."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nuser {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.folder / "mosquitto.log").open("a")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()[-500:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class Subscriber:
    """A QoS 1 subscriber with a persistent session: it gets what was queued for it while disconnected."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{port}", clean_session=False
        )
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def counts(self) -> collections.Counter:
        with self._lock:
            return collections.Counter(message["path"] for message in self.messages)

    def wait_for(self, n_distinct: int, timeout: float) -> collections.Counter:
        deadline = time.time() + timeout
        while len(self.counts()) < n_distinct and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # late duplicates, if any, are counted too
        return self.counts()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path, loopback_port):
    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed (apt-get install -y mosquitto): MQTT tests skipped")
    folder = tmp_path / "broker"
    folder.mkdir()
    running = Broker(folder, loopback_port())
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def mqtt_subscriber():
    """The `Subscriber` class: `mqtt_subscriber(port, topic)`."""
    return Subscriber


@pytest.fixture(scope="session")
def station_model(tiny_mvtec, tmp_path_factory, quick):
    """A PaDiM run folder and its ONNX export, fitted on the tiny textures."""
    detector = quick("padim").fit(load_mvtec(tiny_mvtec, val_fraction=0.25))
    root = tmp_path_factory.mktemp("station")
    run = root / "run"
    run.mkdir()
    detector.save(run / "model.pt")
    return run, export_detector(detector, root / "onnx", "onnx")
