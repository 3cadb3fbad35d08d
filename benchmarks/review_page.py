"""The review page on a real run, in headless Chromium: first screen, drop to score, pictures in flight.

Starts `defectlens review --run RUN` on 127.0.0.1 and a free port, opens the page and measures
- first_screen_ms: from navigation start until every card on the first screen shows its picture;
- drop_to_score_ms: the page's own time (#elapsed) from picking an image until its score shows, picked
  right after jumping to a screen further down, so that the pictures of that screen are loading;
- thumbnails_in_flight_max: the most card-picture requests in flight at once (playwright's network
  events), and thumbnail_requests: how many were sent in all.

    python benchmarks/review_page.py --run /tmp/mtd-padim --out docs/raw/review_page.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
from pathlib import Path

import httpx
from local_services import free_port, start_defectlens
from playwright.sync_api import sync_playwright

FIRST_SCREEN = """() => {
  const cards = [...document.querySelectorAll(".card")]
    .filter((c) => c.getBoundingClientRect().top < innerHeight);
  const shown = cards.length > 0 && cards.every((c) => c.querySelector("img").naturalWidth > 0);
  return shown && { ms: performance.now(), cards: cards.length };
}"""
# jump `screens` screen heights down the gallery (wrapping round at its end)
JUMP = """(screens) => {
  const gallery = document.getElementById("gallery");
  const bottom = gallery.getBoundingClientRect().top + scrollY + gallery.offsetHeight - innerHeight;
  scrollTo(0, (scrollY + screens * innerHeight) % Math.max(1, bottom));
}"""


def start_review(run: Path, port: int) -> subprocess.Popen:
    """`defectlens review --run RUN` in its own process, once it answers /v1/health."""
    return start_defectlens(["review", "--run", str(run)], port)


class ThumbnailRequests:
    """Card-picture requests of a page, counted from its network events."""

    def __init__(self, page) -> None:
        self.sent = self.in_flight = self.most_in_flight = 0
        page.on("request", self.started)
        page.on("requestfinished", self.ended)
        page.on("requestfailed", self.ended)

    def started(self, request) -> None:
        if "/v1/review/thumbnail/" in request.url:
            self.sent += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def ended(self, request) -> None:
        if "/v1/review/thumbnail/" in request.url:
            self.in_flight -= 1


def measure(url: str, image: Path, drops: int, chromium: str) -> dict:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        thumbnails = ThumbnailRequests(page)
        page.goto(url)
        first_screen = page.wait_for_function(FIRST_SCREEN, timeout=60_000).json_value()
        elapsed, loading = [], []
        for _ in range(drops):
            page.evaluate(JUMP, 3)
            page.evaluate("document.getElementById('elapsed').textContent = ''")
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('elapsed').textContent !== ''", timeout=60_000)
            elapsed.append(int(page.inner_text("#elapsed").removesuffix(" ms")))
            loading.append(page.evaluate("document.querySelectorAll('.card img:not([src])').length"))
            page.set_input_files("#file", [])
        browser.close()
    return {
        "first_screen_ms": round(first_screen["ms"]),
        "first_screen_cards": first_screen["cards"],
        "drop_to_score_ms": elapsed,
        "drop_to_score_ms_median": statistics.median(elapsed),
        "pictures_loading_at_score": loading,
        "thumbnails_in_flight_max": thumbnails.most_in_flight,
        "thumbnail_requests": thumbnails.sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="run folder, after `defectlens test`")
    parser.add_argument("--out", type=Path, default=Path("docs/raw/review_page.json"), help="JSON written")
    parser.add_argument("--drops", type=int, default=5, help="images picked, each after a jump down")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = parser.parse_args()
    port = free_port()
    server = start_review(args.run, port)
    try:
        url = f"http://127.0.0.1:{port}"
        items = httpx.get(f"{url}/v1/review/items", timeout=60).json()["items"]
        model = httpx.get(f"{url}/v1/model", timeout=10).json()["model"]
        image = Path(items[len(items) // 2]["path"])  # a test image of the run, mid-way down the scores
        result = measure(url, image, args.drops, args.chromium)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    result = {
        "run": str(args.run.resolve()),
        "model": model,
        "items": len(items),
        "dropped_image": str(image),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
