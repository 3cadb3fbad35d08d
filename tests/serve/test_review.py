"""The review API and page, over real HTTP; the page is driven in a real headless Chromium."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from defectlens.data import read_mask
from defectlens.engine import DataSpec, evaluate_run, train
from defectlens.engine.marks import FeedbackStore
from defectlens.errors import CheckpointError
from defectlens.serve import create_app, open_served_model
from defectlens.serve.app import STATIC
from defectlens.serve.review import ReviewSource, thumbnail

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)
THUMBNAILS_IN_FLIGHT = 4  # the page's bound (app.js)
MANY = 5_000


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


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (apt-get install -y chromium): browser test skipped")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_items_are_sorted_by_score_and_marks_persist(review_url, review_run):
    items = httpx.get(f"{review_url}/v1/review/items").json()["items"]
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True) and len(items) == 8
    assert all(item["mark"] is None and item["truth"] in ("normal", "anomalous") for item in items)
    assert all(item["has_truth_mask"] == (item["truth"] == "anomalous") for item in items)
    answer = httpx.put(f"{review_url}/v1/review/marks/0", json={"mark": "good"})
    assert answer.status_code == 200 and answer.json()["mark"] == "good"
    assert httpx.get(f"{review_url}/v1/review/items").json()["items"][0]["mark"] == "good"
    assert FeedbackStore(review_run / "feedback.sqlite").all() == {items[0]["path"]: "good"}


def test_cards_show_the_overlays_that_defectlens_test_wrote(review_url, review_run):
    lines = {
        line["path"]: line
        for line in map(json.loads, (review_run / "test_predictions.jsonl").read_text().splitlines())
    }
    items = httpx.get(f"{review_url}/v1/review/items").json()["items"]
    for item in items:
        line = lines[item["path"]]
        assert isinstance(line["boxes"], list) and (line["truth_mask"] is not None) == item["has_truth_mask"]
        stored = review_run / line["overlay"]
        thumb = httpx.get(f"{review_url}/v1/review/thumbnail/{item['id']}")
        assert thumb.headers["content-type"] == "image/jpeg" and thumb.content == stored.read_bytes()
        # the overlay of the whole image (72 x 96 fits the card as it is), not the bare image
        card = np.asarray(Image.open(io.BytesIO(thumb.content)))
        assert card.shape == np.asarray(Image.open(item["path"]).convert("RGB")).shape
        assert not np.array_equal(card, np.asarray(Image.open(item["path"]).convert("RGB")))
        original = httpx.get(f"{review_url}/v1/review/image/{item['id']}")
        assert original.content == Path(item["path"]).read_bytes()
    with_mask = next(item for item in items if item["has_truth_mask"])
    answer = httpx.get(f"{review_url}/v1/review/truth/{with_mask['id']}")
    layer = np.asarray(Image.open(io.BytesIO(answer.content)))
    mask = read_mask(lines[with_mask["path"]]["truth_mask"])
    drawn = layer[..., 3] > 0
    assert layer.shape == (*mask.shape, 4) and drawn.any() and mask[drawn].all()  # the mask's edge
    without = next(item for item in items if not item["has_truth_mask"])
    answer = httpx.get(f"{review_url}/v1/review/truth/{without['id']}")
    assert answer.status_code == 404 and "no ground-truth mask" in answer.json()["error"]


def test_predict_output_and_older_runs_get_scaled_pictures(tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(big)
    out = tmp_path / "predicted"
    (out / "overlays").mkdir(parents=True)
    Image.fromarray(np.full((300, 400, 3), 30, np.uint8)).save(out / "overlays" / "big.png")
    line = {"path": str(big), "score": 0.7, "label": "anomalous", "overlay": "overlays/big.png"}
    (out / "predictions.jsonl").write_text(json.dumps(line) + "\n")
    predicted = ReviewSource.open(tmp_path, predictions=out)
    assert predicted.picture(0) == out / "overlays" / "big.png"
    data, media_type = thumbnail(predicted.picture(0))
    card = np.asarray(Image.open(io.BytesIO(data)))
    assert media_type == "image/png" and card.shape == (144, 192, 3) and (card == 30).all()  # scaled
    (tmp_path / "test_predictions.jsonl").write_text(json.dumps({**line, "overlay": None}) + "\n")
    older = ReviewSource.open(tmp_path)
    assert older.picture(0) == big
    assert (np.asarray(Image.open(io.BytesIO(thumbnail(older.picture(0))[0]))) == 200).all()


def test_review_errors(review_url, review_run, tmp_path):
    answer = httpx.put(f"{review_url}/v1/review/marks/0", json={"mark": "ok"})
    assert answer.status_code == 400 and "mark must be one of" in answer.json()["error"]
    answer = httpx.put(f"{review_url}/v1/review/marks/99", json={"mark": "good"})
    assert answer.status_code == 404 and "no review item 99" in answer.json()["error"]
    answer = httpx.put(f"{review_url}/v1/review/marks/0", json={"grade": 1})
    assert answer.status_code == 400
    for kind in ("thumbnail", "image", "truth"):
        answer = httpx.get(f"{review_url}/v1/review/{kind}/99")
        assert answer.status_code == 404 and "no review item 99" in answer.json()["error"]
    with pytest.raises(CheckpointError, match="nothing to review"):
        ReviewSource.open(tmp_path)


def test_gone_files_are_named(review_run, server, tmp_path):
    item = {"path": str(tmp_path / "gone.png"), "score": 0.9, "truth_mask": str(tmp_path / "gone_mask.png")}
    source = ReviewSource([item], FeedbackStore(tmp_path / "feedback.sqlite"), tmp_path)
    with server(create_app(open_served_model(review_run), review=source)) as url:
        for kind, what in (("thumbnail", "picture"), ("image", "image"), ("truth", "mask")):
            error = httpx.get(f"{url}/v1/review/{kind}/0").json()["error"]
            assert what in error and "gone" in error
            assert httpx.get(f"{url}/v1/review/{kind}/0").status_code == 410


def test_page_in_a_real_browser(review_url, tiny_mvtec, browser):
    page = browser.new_page()
    page.goto(review_url)
    assert not page.is_visible("#result")  # no broken placeholder before an upload
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
    items = httpx.get(f"{review_url}/v1/review/items").json()["items"]
    for threshold in ("0.99", "0.5", "0"):  # range inputs take fill() and fire input/change
        page.fill("#threshold", threshold)
        expected = sum(item["score"] >= float(threshold) for item in items)
        assert page.inner_text("#flagged") == f"{expected} of 8 flagged at {float(threshold):.2f}"
    # mark the first card, reload, and the mark is still there
    first = page.locator(".card").first
    first.locator("button[data-mark=defective]").click()
    page.wait_for_selector(".card button[data-mark=defective].active")
    assert page.is_hidden("#detail")  # a mark button does not open the detail view
    page.reload()
    page.wait_for_selector(".card")
    assert "active" in (
        page.locator(".card").first.locator("button[data-mark=defective]").get_attribute("class") or ""
    )
    # the detail view: the full-size overlay, and the ground-truth outline over it
    with_mask = next(item for item in items if item["has_truth_mask"])
    page.click(f'.card[data-id="{with_mask["id"]}"] img')
    page.wait_for_selector("#detail-truth:not([hidden])", timeout=20_000)
    assert page.inner_text("#detail-name") == with_mask["name"]
    height, width = np.asarray(Image.open(with_mask["path"])).shape[:2]
    sizes = page.evaluate(
        "['detail-overlay', 'detail-truth'].map((id) => "
        "[document.getElementById(id).naturalHeight, document.getElementById(id).naturalWidth])"
    )
    assert sizes == [[height, width], [height, width]]
    assert page.get_attribute("#detail-overlay", "src").startswith("data:image/png;base64,")
    page.click("#detail-close")
    assert page.is_hidden("#detail")
    page.close()


# ------------------------------------------------------------------------------------- 5,000 results


@pytest.fixture(scope="module")
def many_results(tmp_path_factory):
    """5,000 results of four defect types, each its own file (tiny PNGs, 100 distinct pictures)."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    pictures = []
    for _ in range(100):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
        pictures.append(buffer.getvalue())
    types = ("good", "scratch", "dent", "crack")
    items = []
    for i in range(MANY):
        path = folder / f"part{i:04d}.png"
        path.write_bytes(pictures[i % len(pictures)])
        score = round(1 - i / MANY, 6)
        defect = types[i % len(types)]
        items.append(
            {
                "path": str(path),
                "score": score,
                "raw_score": score,
                "label": "anomalous" if score >= 0.5 else "normal",
                "truth": "normal" if defect == "good" else "anomalous",
                "defect_type": defect,
            }
        )
    return folder, items


@pytest.fixture
def many_url(review_run, many_results, server):
    """The review of 5,000 results; `delays` (seconds) slow the card pictures (as from a slow share) and
    the scoring of an image (as a large model on a CPU)."""
    folder, items = many_results
    (folder / "feedback.sqlite").unlink(missing_ok=True)
    source = ReviewSource(list(items), FeedbackStore(folder / "feedback.sqlite"), folder)
    app = create_app(open_served_model(review_run), review=source)
    delays = {"/v1/review/thumbnail/": 0.0, "/v1/predict": 0.0}

    @app.middleware("http")
    async def slow_pictures(request, call_next):
        for path, seconds in delays.items():
            if request.url.path.startswith(path):
                await asyncio.sleep(seconds)
        return await call_next(request)

    with server(app) as url:
        yield url, delays


class PictureRequests:
    """The card-picture requests of a page, from playwright's network events."""

    def __init__(self, page) -> None:
        self.ids: list[int] = []
        self.in_flight = self.most_in_flight = 0
        self.log: list[tuple[str, str]] = []  # (event, "thumbnail" | "predict") in order
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    @staticmethod
    def kind(request) -> str | None:
        if "/v1/review/thumbnail/" in request.url:
            return "thumbnail"
        return "predict" if "/v1/predict" in request.url else None

    def started(self, request) -> None:
        kind = self.kind(request)
        if kind:
            self.log.append(("start", kind))
        if kind == "thumbnail":
            self.ids.append(int(request.url.rsplit("/", 1)[1]))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def ended(self, request) -> None:
        kind = self.kind(request)
        if kind:
            self.log.append(("end", kind))
        if kind == "thumbnail":
            self.in_flight -= 1


FIRST_SCREEN = """() => {
  const cards = [...document.querySelectorAll(".card")]
    .filter((c) => c.getBoundingClientRect().top < innerHeight);
  const shown = cards.length > 0 && cards.every((c) => c.querySelector("img").naturalWidth > 0);
  return shown && { ms: performance.now(), cards: cards.length };
}"""
RENDERED_IDS = "[...document.querySelectorAll('.card')].map((c) => Number(c.dataset.id))"
# columns and row height of the grid, read off the first two rows (at the top of the gallery)
GRID = """() => {
  const columns = [...document.querySelectorAll(".card")].filter((c) => c.offsetTop === 0).length;
  return { columns, rowHeight: document.querySelector(`.card[data-id="${columns}"]`).offsetTop };
}"""


def scroll_to_item(page, grid: dict, item_id: int) -> set[int]:
    """Scroll the gallery to the row of `item_id` and return the ids of the cards rendered there."""
    row_top = item_id // grid["columns"] * grid["rowHeight"]
    page.evaluate(
        "(y) => scrollTo(0, document.getElementById('gallery').getBoundingClientRect().top + scrollY + y)",
        row_top,
    )
    page.wait_for_selector(f'.card[data-id="{item_id}"]')
    return set(page.evaluate(RENDERED_IDS))


def test_five_thousand_results(many_url, many_results, tiny_mvtec, browser):
    url, delays = many_url
    _, items = many_results
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    pictures = PictureRequests(page)
    page.goto(url)
    first_screen = page.wait_for_function(FIRST_SCREEN, timeout=20_000).json_value()
    assert first_screen["ms"] < 2000 and first_screen["cards"] >= 5  # since navigation started
    assert not page.is_visible("#result")
    assert page.inner_text("#shown-count") == f"showing {MANY}"
    rendered = set(page.evaluate(RENDERED_IDS))
    assert len(rendered) < 60 and set(pictures.ids) <= rendered  # only cards on or near the screen
    page.wait_for_function("[...document.querySelectorAll('.card img')].every((i) => i.naturalWidth > 0)")
    grid = page.evaluate(GRID)
    columns = grid["columns"]
    assert columns >= 2

    # From here each picture takes 0.4 s: cards scrolled past before their turn never ask for theirs.
    delays["/v1/review/thumbnail/"] = 0.4
    passed_by = scroll_to_item(page, grid, 1500) - rendered
    ahead = scroll_to_item(page, grid, 3500)
    assert len(passed_by) >= 15 and len(set(pictures.ids) & passed_by) <= THUMBNAILS_IN_FLIGHT
    # A picked image is scored while the pictures of this screen are still loading; scoring takes 0.5 s,
    # so every picture in flight when it starts ends while it runs.
    delays["/v1/predict"] = 0.5
    page.set_input_files("#file", str(next((tiny_mvtec / "test" / "scratch").iterdir())))
    page.wait_for_selector("#result:not([hidden])", timeout=20_000)
    assert int(page.inner_text("#elapsed").removesuffix(" ms")) < 1000
    assert page.evaluate("document.querySelectorAll('.card img:not([src])').length") > 0
    during = pictures.log[pictures.log.index(("start", "predict")) : pictures.log.index(("end", "predict"))]
    assert ("end", "thumbnail") in during and ("start", "thumbnail") not in during  # none asked for meanwhile
    page.wait_for_function("[...document.querySelectorAll('.card img')].every((i) => i.naturalWidth > 0)")
    # every card on screen got its picture (the result panel above may have moved the rows since)
    on_screen = set(page.evaluate(RENDERED_IDS))
    assert on_screen & ahead and on_screen <= set(pictures.ids)
    assert pictures.most_in_flight == THUMBNAILS_IN_FLIGHT  # the bound, reached and never passed
    delays["/v1/review/thumbnail/"] = delays["/v1/predict"] = 0.0

    # keyboard: g / d mark the selection, arrows move it; marks survive a reload
    page.evaluate("scrollTo(0, 0)")

    def press(key: str) -> None:
        with page.expect_response(lambda r: "/v1/review/marks/" in r.url):
            page.keyboard.press(key)

    press("g")
    page.keyboard.press("ArrowRight")
    press("d")
    page.keyboard.press("ArrowDown")
    assert page.get_attribute(".card.selected", "data-id") == str(1 + columns)
    press("g")
    press("g")  # the same mark again clears it
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute(".card.selected", "data-id") == str(columns)
    page.reload()
    page.wait_for_selector('.card[data-id="1"]')
    assert page.get_attribute('.card[data-id="0"] button[data-mark=good]', "class") == "active"
    assert page.get_attribute('.card[data-id="1"] button[data-mark=defective]', "class") == "active"
    assert page.locator(f'.card[data-id="{1 + columns}"] button.active').count() == 0
    marks = FeedbackStore(many_results[0] / "feedback.sqlite").all()
    assert marks == {items[0]["path"]: "good", items[1]["path"]: "defective"}

    # filters: defect type, mark, and both with flagged/passed
    def showing(**choices: str) -> set[int]:
        for control, value in choices.items():
            page.select_option(f"#{control.replace('_', '-')}", value)
        return set(page.evaluate(RENDERED_IDS))

    dents = showing(defect_type="dent")
    assert dents and dents <= {i for i in range(MANY) if items[i]["defect_type"] == "dent"}
    assert page.inner_text("#shown-count") == f"showing {MANY // 4}"
    assert showing(defect_type="", mark="defective") == {1}
    assert showing(mark="unmarked") >= {2, 3} and page.inner_text("#shown-count") == f"showing {MANY - 2}"
    flagged_scratches = sum(item["defect_type"] == "scratch" and item["score"] >= 0.5 for item in items)
    showing(mark="", defect_type="scratch", filter="anomalous")
    assert page.inner_text("#shown-count") == f"showing {flagged_scratches}"
    showing(defect_type="", filter="all")

    # the detail view: Enter opens it, arrows move it, Escape closes it; a click opens it too
    chosen = int(page.get_attribute(".card.selected", "data-id"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail:not([hidden])")
    assert page.inner_text("#detail-name") == Path(items[chosen]["path"]).name
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#detail-name") == Path(items[chosen + 1]["path"]).name
    page.wait_for_function("document.getElementById('detail-status').textContent.startsWith('boxes:')")
    assert page.get_attribute("#detail-overlay", "src").startswith("data:image/png;base64,")
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")
    page.click('.card[data-id="2"] img')
    assert page.is_visible("#detail") and page.inner_text("#detail-name") == Path(items[2]["path"]).name
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")
    page.close()


# ------------------------------------------------------------------------------------- drift chart


def drift_answer(psi: list[float], level: float = 0.25) -> dict:
    history = [
        {
            "time": 1_700_000_000 + 10 * i,
            "count": 100 * (i + 1),
            "share_above": 0.02 + v / 10,
            "psi": v,
            "ks": v / 2,
            "mean_score": 0.3,
            "alarm": v >= level,
        }
        for i, v in enumerate(psi)
    ]
    last = history[-1]
    return {
        "count": last["count"],
        "window": 500,
        "alarm": last["alarm"],
        "levels": {"psi": level, "ks_pvalue": 0.001},
        "current": {
            "share_above": last["share_above"],
            "expected_share": 0.02,
            "psi": last["psi"],
            "ks": last["ks"],
            "ks_pvalue": 0.0004 if last["alarm"] else 0.4,
            "mean_score": 0.3,
        },
        "history": history,
    }


def test_drift_chart(server, browser):
    """The page against the `GET /v1/drift` contract, served by a stub (the monitor lives in the service)."""
    answer = {"status": 200, "body": drift_answer([0.01 * i for i in range(40)])}  # PSI rises past 0.25
    app = FastAPI()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.get("/")(lambda: FileResponse(STATIC / "index.html"))
    app.get("/v1/health")(lambda: {"status": "ok", "model": "stub", "review": False})
    app.get("/v1/model")(
        lambda: {"model": "stub", "runtime": "none", "input_size": [64, 64], "defectlens_version": "0"}
    )
    app.get("/v1/drift")(lambda: JSONResponse(answer["body"], status_code=answer["status"]))
    with server(app) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#drift:not([hidden])")
        assert page.inner_text("#drift-state").startswith("ALARM: PSI 0.390 (alarm at 0.25)")
        points = page.get_attribute("#drift-psi polyline", "points").split()
        ys = [float(point.split(",")[1]) for point in points]
        level = float(page.get_attribute("#drift-psi line.level", "y1"))
        assert len(points) == 40 and max(ys) > level > min(ys)  # the series crosses the alarm line
        assert ys == sorted(ys, reverse=True)  # rising PSI: higher on the chart
        assert page.locator("#drift-psi circle.alarm").count() == sum(0.01 * i >= 0.25 for i in range(40))
        assert len(page.get_attribute("#drift-share polyline", "points").split()) == 40
        answer["body"] = {**drift_answer([0.01]), "count": 0}  # the refresh hides it: no image seen
        page.wait_for_selector("#drift", state="hidden", timeout=10_000)
        answer["body"] = drift_answer([0.05, 0.02])
        page.wait_for_selector("#drift:not([hidden])", timeout=10_000)
        assert page.inner_text("#drift-state").startswith("no alarm: PSI 0.020")
        answer["status"] = 404
        page.wait_for_selector("#drift", state="hidden", timeout=10_000)
        page.close()
