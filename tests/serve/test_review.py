"""The review API and page, over real HTTP; the page is driven in a real headless Chromium."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from defectlens.engine import DataSpec, evaluate_run, train
from defectlens.engine.marks import FeedbackStore
from defectlens.serve import create_app, open_served_model
from defectlens.serve.review import ReviewSource

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)


@pytest.fixture(scope="module")
def review_run(tiny_mvtec, tmp_path_factory):
    out = tmp_path_factory.mktemp("review") / "run"
    params = {"image_size": 64, "batch_size": 4, "device": "cpu"}
    run = train("padim", DataSpec.mvtec(tiny_mvtec, val_fraction=0.25), out, params, progress=False).run
    evaluate_run(run, report=False, progress=False)
    return run


@pytest.fixture
def review_url(review_run, server):
    (review_run / "feedback.sqlite").unlink(missing_ok=True)
    app = create_app(open_served_model(review_run), review=ReviewSource.open(review_run))
    with server(app) as url:
        yield url


def test_items_are_sorted_by_score_and_marks_persist(review_url, review_run):
    items = httpx.get(f"{review_url}/v1/review/items").json()["items"]
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True) and len(items) == 8
    assert all(item["mark"] is None and item["truth"] in ("normal", "anomalous") for item in items)
    answer = httpx.put(f"{review_url}/v1/review/marks/0", json={"mark": "good"})
    assert answer.status_code == 200 and answer.json()["mark"] == "good"
    assert httpx.get(f"{review_url}/v1/review/items").json()["items"][0]["mark"] == "good"
    assert FeedbackStore(review_run / "feedback.sqlite").all() == {items[0]["path"]: "good"}
    thumb = httpx.get(f"{review_url}/v1/review/thumbnail/3")
    assert thumb.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 192


def test_review_errors(review_url, review_run, tmp_path):
    answer = httpx.put(f"{review_url}/v1/review/marks/0", json={"mark": "ok"})
    assert answer.status_code == 400 and "mark must be one of" in answer.json()["error"]
    answer = httpx.put(f"{review_url}/v1/review/marks/99", json={"mark": "good"})
    assert answer.status_code == 404 and "no review item 99" in answer.json()["error"]
    answer = httpx.put(f"{review_url}/v1/review/marks/0", json={"grade": 1})
    assert answer.status_code == 400
    from defectlens.errors import CheckpointError

    with pytest.raises(CheckpointError, match="nothing to review"):
        ReviewSource.open(tmp_path)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (apt-get install -y chromium): browser test skipped"
)
def test_page_in_a_real_browser(review_url, tiny_mvtec):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(review_url)
        # inspect an uploaded image: score and label appear
        image = next((tiny_mvtec / "test" / "scratch").iterdir())
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#result:not([hidden])", timeout=20_000)
        score = float(page.inner_text("#score"))
        assert 0 <= score <= 1 and page.inner_text("#label") in ("normal", "anomalous")
        assert page.get_attribute("#overlay", "src").startswith("data:image/png;base64,")
        assert int(page.inner_text("#elapsed").removesuffix(" ms")) < 1000  # drop to score in under a second
        # the threshold slider changes how many are flagged
        page.wait_for_selector(".card")
        scores = [item["score"] for item in httpx.get(f"{review_url}/v1/review/items").json()["items"]]
        for threshold in ("0.99", "0.5", "0"):  # range inputs take fill() and fire input/change
            page.fill("#threshold", threshold)
            expected = sum(score >= float(threshold) for score in scores)
            assert page.inner_text("#flagged") == f"{expected} of 8 flagged at {float(threshold):.2f}"
        # mark the first card, reload, and the mark is still there
        first = page.locator(".card").first
        first.locator("button[data-mark=defective]").click()
        page.wait_for_selector(".card button[data-mark=defective].active")
        page.reload()
        page.wait_for_selector(".card")
        assert "active" in (
            page.locator(".card").first.locator("button[data-mark=defective]").get_attribute("class") or ""
        )
        browser.close()
