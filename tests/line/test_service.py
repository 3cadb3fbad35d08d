"""The service's station outputs over real HTTP: Prometheus metrics, the drift alarm, a folder sink."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from defectlens.line import DriftMonitor, Outputs, open_sinks
from defectlens.serve import create_app, open_served_model


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(url: str, image: np.ndarray, name: str) -> dict:
    answer = httpx.post(f"{url}/v1/predict", files={"file": (name, png(image), "image/png")}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"][0]


def metrics(url: str) -> dict[str, float]:
    answer = httpx.get(f"{url}/v1/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        sample.name + "".join(f"{{{k}={v}}}" for k, v in sample.labels.items()): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_brightness_shift_raises_the_drift_alarm(station_model, make_texture, server, tmp_path):
    _, export = station_model
    served = open_served_model(export)
    outputs = Outputs(
        open_sinks(None, out=[tmp_path / "results"]),
        None,
        DriftMonitor.for_calibration(served.calibration, 40),
    )
    with server(create_app(served, outputs=outputs)) as url:
        for i in range(40):  # parts like the training parts
            upload(url, make_texture(2000 + i), f"good{i}.png")
        calm = httpx.get(f"{url}/v1/drift").json()
        before = metrics(url)
        for i in range(40):  # the lighting changed: every part 60 grey levels brighter
            brighter = np.clip(make_texture(3000 + i).astype(int) + 60, 0, 255).astype(np.uint8)
            upload(url, brighter, f"bright{i}.png")
        drifted = httpx.get(f"{url}/v1/drift").json()
        after = metrics(url)
        checked = httpx.post(  # a check by hand is scored, but neither published nor counted
            f"{url}/v1/predict", params={"publish": "false"}, content=png(make_texture(9)), timeout=30
        )
        assert checked.status_code == 200 and httpx.get(f"{url}/v1/drift").json()["count"] == 80
    assert calm["count"] == 40 and not calm["alarm"], calm["current"]
    assert before["defectlens_drift_alarm"] == 0 and before["defectlens_drift_window_count"] == 40
    assert drifted["alarm"] and drifted["count"] == 80 and len(drifted["history"]) == 80
    assert (
        drifted["current"]["psi"] >= 0.25 and drifted["current"]["mean_score"] > calm["current"]["mean_score"]
    )
    assert after["defectlens_drift_alarm"] == 1
    assert after["defectlens_drift_psi"] == drifted["current"]["psi"]
    labelled = sum(v for k, v in after.items() if k.startswith("defectlens_images_total"))
    assert labelled == 80 and after["defectlens_model_seconds_count"] == 80
    lines = (tmp_path / "results" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 80 and json.loads(lines[-1])["path"] == "bright39.png"


def test_metrics_and_drift_need_the_key(station_model, server):
    _, export = station_model
    with server(create_app(open_served_model(export), api_key="k")) as url:
        assert httpx.get(f"{url}/v1/metrics").status_code == 401
        assert httpx.get(f"{url}/v1/drift").status_code == 401
        answer = httpx.get(f"{url}/v1/metrics", headers={"X-API-Key": "k"})
        names = {family.name for family in text_string_to_metric_families(answer.text)}
        assert {"defectlens_images", "defectlens_drift_psi", "defectlens_drift_alarm"} <= names
