"""The service over real HTTP: a uvicorn server on a loopback port and an httpx client."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from defectlens.data import load_mvtec, read_image
from defectlens.export import export_detector
from defectlens.inference import Inferencer
from defectlens.serve import Limits, create_app, open_served_model

KEY = "test-key-123"


@pytest.fixture(scope="module")
def artefacts(tiny_mvtec, tmp_path_factory, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("padim").fit(splits)
    root = tmp_path_factory.mktemp("serve")
    run = root / "run"
    run.mkdir()
    detector.save(run / "model.pt")
    return detector, run, export_detector(detector, root / "onnx", "onnx"), splits


@pytest.fixture(scope="module")
def service(artefacts, server):
    _, _, export, _ = artefacts
    app = create_app(
        open_served_model(export), api_key=KEY, limits=Limits(max_upload_bytes=300_000, max_pixels=200_000)
    )
    with server(app) as url:
        yield url


def png(path) -> bytes:
    return path.read_bytes()


def post(url, content=None, files=None, key=KEY, **params):
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(
        f"{url}/v1/predict", content=content, files=files, headers=headers, params=params, timeout=30
    )


def test_torch_run_export_and_service_give_the_same_scores(artefacts, service):
    detector, _, export, splits = artefacts
    paths = [r.path for r in splits.test]
    torch_scores = detector.predict(paths).score
    exported_scores = Inferencer(export).predict(paths).score
    files = [("files", (p.name, png(p), "image/png")) for p in paths]
    answer = post(service, files=files)
    assert answer.status_code == 200, answer.text
    served = [p["score"] for p in answer.json()["predictions"]]
    assert np.abs(exported_scores - torch_scores).max() < 1e-3
    assert np.abs(np.array(served) - torch_scores).max() < 1e-3
    assert [p["path"] for p in answer.json()["predictions"]] == [p.name for p in paths]


def test_raw_body_with_mask_and_overlay(artefacts, service):
    _, _, _, splits = artefacts
    record = next(r for r in splits.test if r.label == 1)
    answer = post(service, content=png(record.path), include="mask,overlay")
    assert answer.status_code == 200, answer.text
    entry = answer.json()["predictions"][0]
    assert (
        entry["label"] == "anomalous"
        and entry["boxes"]
        and set(entry) >= {"raw_score", "mask_png", "overlay_png"}
    )
    height, width = read_image(record.path).shape[:2]
    mask = Image.open(io.BytesIO(base64.b64decode(entry["mask_png"])))
    assert mask.size == (width, height)
    x0, y0, x1, y1, score = entry["boxes"][0]
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and score >= 0.5


def test_numpy_upload_and_health_model_endpoints(artefacts, service):
    detector, _, _, splits = artefacts
    array = read_image(splits.test[0].path)
    buffer = io.BytesIO()
    np.save(buffer, array)
    files = {"file": ("part.npy", buffer.getvalue(), "application/x-npy")}
    answer = post(service, files=files)
    assert answer.status_code == 200
    assert answer.json()["predictions"][0]["score"] == pytest.approx(
        detector.predict(array).score[0], abs=1e-3
    )
    assert httpx.get(f"{service}/v1/health").json()["status"] == "ok"  # no key needed
    info = httpx.get(f"{service}/v1/model", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["model"] == "padim" and info["input_size"] == [64, 64] and info["runtime"] == "onnxruntime"
    assert info["threshold"] == pytest.approx(detector.calibration.image_threshold)
    assert httpx.get(f"{service}/openapi.json").status_code == 200


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"content": b"this is not an image"}, 400, "not an image"),
        ({"content": b""}, 400, "empty"),
        ({"files": {"f": ("cut.png", "TRUNCATED", "image/png")}}, 400, "cannot read image cut.png"),
        ({"files": {"f": ("two.npy", "TWO_CHANNELS", "application/x-npy")}}, 400, "got shape (8, 8, 2)"),
        ({"files": {"f": ("big.png", "BIG", "image/png")}}, 413, "over the limit of 200,000"),
        ({"content": b"x" * 300_001}, 413, "over the limit of 300,000 bytes"),
        ({"content": b"x", "include": "heatmap"}, 400, "unknown include ['heatmap']"),
        ({"content": b"x", "task": "boxes"}, 400, "task must be one of"),
        ({"content": b"x", "key": None}, 401, "needs an API key"),
        ({"content": b"x", "key": "wrong"}, 401, "wrong API key"),
        ({"files": {"note": (None, "just text", "text/plain")}}, 400, "holds no file"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_reason(artefacts, service, request_kwargs, status, message):
    _, _, _, splits = artefacts
    files = request_kwargs.get("files")
    if files:
        name, (filename, content, kind) = next(iter(files.items()))
        replacements = {
            "TRUNCATED": png(splits.test[0].path)[:200],
            "TWO_CHANNELS": npy(np.zeros((8, 8, 2), np.uint8)),
            "BIG": _png_bytes(np.zeros((500, 500, 3), np.uint8)),
        }
        request_kwargs = {
            **request_kwargs,
            "files": {name: (filename, replacements.get(content, content), kind)},
        }
    answer = post(service, **request_kwargs)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_concurrent_requests_share_batches_and_a_full_queue_answers_503(artefacts, server):
    _, run, _, splits = artefacts
    served = open_served_model(run)  # the torch run this time
    assert served.info["runtime"] == "torch"
    gate, model_predict = threading.Event(), served.predict

    def predict(images):
        gate.wait(timeout=30)  # hold the worker on its first batch so that requests queue up
        return model_predict(images)

    served.predict = predict
    app = create_app(served, max_batch=8, max_wait_ms=1, max_queue=4)
    batcher = app.state.batcher
    body = png(splits.test[0].path)

    def send():
        return httpx.post(f"{url}/v1/predict", content=body, timeout=60)

    with server(app) as url, ThreadPoolExecutor(8) as pool:
        first = pool.submit(send)
        wait_for(lambda: batcher._queue.qsize() == 0 and first.running())
        time.sleep(0.2)  # the worker now holds the first image inside predict
        queued = [pool.submit(send) for _ in range(4)]
        wait_for(lambda: batcher._queue.qsize() == 4)
        busy = send()
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert "busy" in busy.json()["error"]
        gate.set()
        answers = [first.result(), *(f.result() for f in queued)]
    assert [a.status_code for a in answers] == [200] * 5
    assert batcher.batches_run == 2  # the four queued requests shared one model call
    scores = {a.json()["predictions"][0]["score"] for a in answers}
    assert max(scores) - min(scores) < 1e-6


def wait_for(condition, timeout=20.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "condition not reached in time"
        time.sleep(0.01)
