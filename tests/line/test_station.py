"""The station end to end in one process: a folder in, a real webhook receiver and a folder out."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from defectlens.engine.predict import open_scorer
from defectlens.errors import ConfigError
from defectlens.line import (
    DriftMonitor,
    FolderSink,
    FolderSource,
    Outputs,
    Part,
    Result,
    Station,
    StationStore,
    WebhookSink,
    open_sinks,
)


class Receiver:
    """A webhook receiver that answers 503 to the first `failures` posts and 400 to paths with 'refuse'."""

    def __init__(self, failures: int) -> None:
        self.failures, self.posts, self.accepted = failures, 0, []
        self.app = FastAPI()
        self.app.post("/hook")(self.hook)

    async def hook(self, request: Request) -> JSONResponse:
        self.posts += 1
        body = await request.json()
        if self.posts <= self.failures:
            return JSONResponse({"error": "warming up"}, status_code=503)
        if "refuse" in body["path"]:
            return JSONResponse({"error": "not for us"}, status_code=400)
        self.accepted.append(body)
        return JSONResponse({"ok": True})


def test_folder_to_webhook_and_folder_with_retries(tmp_path, station_model, make_texture, server):
    _, export = station_model
    scorer = open_scorer(export)
    watched, out = tmp_path / "camera", tmp_path / "results"
    watched.mkdir()
    names = ["a.png", "b.png", "refuse.png", "c.png"]
    for i, name in enumerate(names):
        Image.fromarray(make_texture(500 + i)).save(watched / name)
    (watched / "d.png").write_bytes(b"not an image")
    receiver = Receiver(failures=2)
    store = StationStore(tmp_path / "state")
    with server(receiver.app) as url:
        sinks = open_sinks(store, webhook=[f"{url}/hook"], out=[out])
        outputs = Outputs(sinks, store, DriftMonitor.for_calibration(scorer.calibration))
        stop = threading.Event()
        station = Station(scorer, outputs, task="detection", max_batch=2)
        source = FolderSource(watched, store, settle_s=0.1, give_up_s=0.3)
        scored = station.run(source, stop, idle_exit_s=1.5)
        deadline = time.time() + 20
        while store.count_pending(sinks[1].name) and time.time() < deadline:
            time.sleep(0.1)
        outputs.close()
    assert scored == 5
    # retried through two 503s, then delivered in order; the 400 was dropped, not retried forever
    assert [entry["path"].rsplit("/", 1)[1] for entry in receiver.accepted] == [
        "a.png",
        "b.png",
        "c.png",
        "d.png",
    ]
    assert receiver.posts == 2 + 5
    bad = receiver.accepted[-1]
    assert "d.png" in bad["error"] and "label" not in bad
    for entry in receiver.accepted[:3]:
        assert entry["label"] in ("normal", "anomalous") and entry["task"] == "detection"
        assert set(entry["timing"]) == {"arrived", "read_ms", "model_ms", "latency_ms", "batch"}
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and all((out / line["overlay"]).is_file() for line in lines if "overlay" in line)
    # the folder sink and the webhook got the same decision
    by_path = {line["path"]: line for line in lines}
    assert all(by_path[entry["path"]]["score"] == entry["score"] for entry in receiver.accepted[:3])


def test_folder_sink_appends_and_never_overwrites(tmp_path, station_model, make_texture):
    _, export = station_model
    scorer = open_scorer(export)
    image = make_texture(7)
    prediction = scorer.predict([image])
    from defectlens.engine.predict import describe

    for _ in range(2):  # two stations, one after the other, same image name
        sink = FolderSink(tmp_path / "out")
        entry, heat, found = describe("cam/x.png", prediction, 0, "segmentation")
        sink.write(Result(entry, image, heat, found))
        sink.close()
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [line["overlay"] for line in lines] == ["overlays/x.png", "overlays/x_.png"]
    assert [line["mask"] for line in lines] == ["masks/x.png", "masks/x_.png"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        FolderSink(tmp_path / "file")


def test_store_spools_and_marks_in_one_transaction(tmp_path):
    store = StationStore(tmp_path)
    store.record([("mqtt://a", {"path": "x"}), ("mqtt://a", {"path": "y"})], [("cam", "x|1|2")])
    assert store.is_scored("cam", "x|1|2") and not store.is_scored("cam", "y|1|2")
    rows = store.pending("mqtt://a")
    assert [json.loads(payload)["path"] for _, payload in rows] == ["x", "y"]
    assert store.pending("mqtt://a", after=rows[0][0]) == rows[1:]
    store.delivered(rows[0][0])
    assert store.count_pending("mqtt://a") == 1 and store.count_pending("other") == 0
    with pytest.raises(TypeError):  # a payload that is not JSON: nothing is spooled, nothing marked
        store.record([("mqtt://a", {"path": object()})], [("cam", "z|1|2")])
    assert store.count_pending("mqtt://a") == 1 and not store.is_scored("cam", "z|1|2")
    store.close()
    reopened = StationStore(tmp_path)  # and it is all still there after a restart
    assert reopened.count_pending("mqtt://a") == 1 and reopened.is_scored("cam", "x|1|2")


def test_one_bad_image_in_a_batch_is_reported_in_its_row(tmp_path, station_model, make_texture):
    _, export = station_model
    outputs = Outputs(open_sinks(None, out=[tmp_path / "out"]), None, None)
    station = Station(open_scorer(export), outputs, max_batch=4)
    good = [Part(f"p{i}.png", make_texture(i), arrived=time.time()) for i in range(2)]
    broken = Part("tiny.png", np.zeros((1, 1, 5), np.uint8), arrived=time.time())
    results = station.score([good[0], broken, good[1]])
    outputs.close()
    assert [("error" in r.entry) for r in results] == [False, True, False]
    assert "cannot score tiny.png" in results[1].entry["error"]


def test_sink_settings_are_checked(tmp_path):
    store = StationStore(tmp_path)
    for url, message in [
        ("http://broker/topic", "--mqtt must look like mqtt://HOST"),
        ("mqtt://broker", "--mqtt must look like mqtt://HOST"),
        ("mqtt://broker/line/#", "holds a wildcard"),
    ]:
        with pytest.raises(ConfigError, match=message):
            open_sinks(store, mqtt=[url])
    with pytest.raises(ConfigError, match="--webhook must be an http"):
        WebhookSink("ftp://x/y", store)
    with pytest.raises(ConfigError, match="need a state folder"):
        open_sinks(None, webhook=["http://localhost/x"])
