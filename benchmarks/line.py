"""The station on a line, end to end: `defectlens watch` on a folder receiving MTD images, publishing
every result to a real Mosquitto broker on loopback.

    python benchmarks/line.py --data ../shared/data/mtd/magnetic_tile --model padim --model patchcore \
        --out docs/raw/line.jsonl

For each model: train with default settings, export to ONNX, start the broker, a QoS 1 subscriber and the
watcher (its own process, as on a line), then
- burst: copy --images test images into the folder as fast as the disk allows (a backlog, e.g. after a
  stop) and time from the first file written to the last message received: the station's throughput;
- paced: write --paced images at --rate per second (a camera) and take, per image, the time from the
  file being written to its message arriving (this includes --settle, the wait that tells a complete file).
Prints a markdown table and appends one JSON line per model to --out. Needs mosquitto installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from local_services import free_port

from defectlens.data import load_mvtec
from defectlens.engine import DataSpec, train
from defectlens.export import export_run

TOPIC = "bench/parts"


class Received:
    """Arrival time of each message, by the image's file name."""

    def __init__(self, port: int) -> None:
        self.at: dict[str, float] = {}
        self.messages = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self.client.on_connect = lambda client, *_: client.subscribe(TOPIC, qos=1)
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def on_message(self, client, userdata, message) -> None:
        name = Path(json.loads(message.payload)["path"]).name
        with self.lock:
            self.messages += 1
            self.at.setdefault(name, time.time())

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if all(name in self.at for name in names):
                    return
            time.sleep(0.02)
        raise SystemExit(f"only {len(self.at)} of {len(names)} messages arrived in {timeout:.0f} s")


def measure(export: Path, images: list[Path], args, work: Path) -> dict:
    port = free_port()
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([args.mosquitto, "-c", str(work / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    received = Received(port)
    folder = work / "camera"
    folder.mkdir()
    watch = [sys.executable, "-m", "defectlens", "watch", str(folder), "--model", str(export), "--quiet",
             "--mqtt", f"mqtt://127.0.0.1:{port}/{TOPIC}", "--state", str(work / "state"),
             "--settle", str(args.settle), "--max-batch", str(args.max_batch)]  # fmt: skip
    watcher = subprocess.Popen(watch, stdout=(work / "watch.log").open("w"), stderr=subprocess.STDOUT)
    try:
        warmup = [images[0]]  # the first model call pays for loading; not part of the line's rate
        shutil.copy(warmup[0], folder / f"warmup{warmup[0].suffix}")
        received.wait([f"warmup{warmup[0].suffix}"], 120)
        burst = images[: args.images]
        start = time.time()
        for i, path in enumerate(burst):
            shutil.copy(path, folder / f"b{i:04d}{path.suffix}")
        written = time.time() - start
        names = [f"b{i:04d}{path.suffix}" for i, path in enumerate(burst)]
        received.wait(names, 60 + 2 * len(burst))
        burst_s = max(received.at[name] for name in names) - start
        paced, latencies = images[: args.paced], []
        for i, path in enumerate(paced):
            tick = time.time()
            target = folder / f"p{i:04d}{path.suffix}"
            shutil.copy(path, target.with_suffix(".part"))
            os.replace(target.with_suffix(".part"), target)
            written_at = time.time()
            received.wait([target.name], 60)
            latencies.append(received.at[target.name] - written_at)
            time.sleep(max(0.0, 1 / args.rate - (time.time() - tick)))
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        received.client.loop_stop()
        broker.terminate()
        broker.wait(timeout=10)
    latencies = np.array(latencies) * 1000
    return {
        "images": len(burst),
        "write_s": round(written, 2),
        "burst_images_per_second": round(len(burst) / burst_s, 2),
        "paced_images": len(paced),
        "rate": args.rate,
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1),
        "messages": received.messages,
        "expected_messages": 1 + len(burst) + len(paced),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="MVTec-layout folder, e.g. MTD")
    parser.add_argument("--model", action="append", help="detector to train and export (repeatable)")
    parser.add_argument("--images", type=int, default=500, help="images in the burst")
    parser.add_argument("--paced", type=int, default=60, help="images written at --rate")
    parser.add_argument("--rate", type=float, default=2.0, help="paced images per second")
    parser.add_argument("--settle", type=float, default=0.5, help="watch --settle")
    parser.add_argument("--max-batch", type=int, default=8, help="watch --max-batch")
    parser.add_argument("--out", type=Path, default=Path("docs/raw/line.jsonl"))
    args = parser.parse_args()
    args.mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(args.mosquitto).exists():
        raise SystemExit("mosquitto is not installed (apt-get install -y mosquitto)")
    if not (args.data / "train" / "good").is_dir():
        raise SystemExit(f"no dataset at {args.data} (see ../shared/data/README.md)")
    images = [record.path for record in load_mvtec(args.data).test]
    images = (images * (1 + args.images // len(images)))[: max(args.images, args.paced)]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; data {args.data}; settle {args.settle} s")
    print("| model | burst img/s | paced latency p50 / p95 (ms) | messages |")
    print("|---|---|---|---|")
    for name in args.model or ["padim"]:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            run = train(name, DataSpec.mvtec(args.data), work / "run", progress=False).run
            export = export_run(run, work / "export", "onnx")
            row = {"model": name, "runtime": "onnxruntime", **measure(export, images, args, work)}
        row.update(machine=platform.machine(), cores=os.cpu_count(), date=time.strftime("%Y-%m-%d"))
        latency = f"{row['latency_ms_p50']} / {row['latency_ms_p95']}"
        print(
            f"| {name} | {row['burst_images_per_second']} | {latency} "
            f"| {row['messages']} of {row['expected_messages']} |"
        )
        with args.out.open("a") as lines:
            lines.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
