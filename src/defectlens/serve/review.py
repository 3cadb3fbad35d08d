"""Review of a run's results: a gallery sorted by score, with an engineer's marks (`engine.marks`).

`defectlens refit --with-feedback` folds the marks back into the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from defectlens.data.io import read_image
from defectlens.engine.marks import FeedbackStore
from defectlens.engine.runs import FEEDBACK_DB, TEST_PREDICTIONS
from defectlens.errors import CheckpointError, ConfigError, DataError
from defectlens.reports.figures import encode_png

THUMBNAIL_SIDE = 192


@dataclass
class ReviewSource:
    """The images a review shows: a run's test results or a predictions.jsonl, sorted by score.

    Attributes:
        items: one dict per image (path, score, label, raw_score; truth and defect_type for test
            results), highest score first; its position is the image's id in the API.
        store: where the marks go.
    """

    items: list[dict[str, Any]]
    store: FeedbackStore

    @staticmethod
    def open(run: str | Path, predictions: str | Path | None = None) -> ReviewSource:
        """The test results of `run` (after `defectlens test`) or `predictions` (a predictions.jsonl or
        the folder holding it); marks are stored in the run.

        Raises:
            CheckpointError: there are no results to review.
        """
        run = Path(run)
        source = Path(predictions) if predictions else run / TEST_PREDICTIONS
        if source.is_dir():
            source = source / "predictions.jsonl"
        if not source.is_file():
            hint = (
                "run `defectlens test --run RUN` first" if predictions is None else "run `defectlens predict`"
            )
            raise CheckpointError(f"nothing to review: {source} does not exist ({hint})")
        try:
            items = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
        except ValueError as error:
            raise CheckpointError(f"cannot read {source}: {error}") from error
        items.sort(key=lambda item: -float(item["score"]))
        return ReviewSource(items, FeedbackStore(run / FEEDBACK_DB))

    def item(self, item_id: int) -> dict[str, Any]:
        if not 0 <= item_id < len(self.items):
            raise DataError(f"no review item {item_id}: ids run from 0 to {len(self.items) - 1}")
        return self.items[item_id]


class MarkBody(BaseModel):
    mark: str | None


def thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> bytes:
    """PNG of the image scaled to fit a `side` x `side` box."""
    image = read_image(path)
    scale = side / max(image.shape[:2])
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return encode_png(np.ascontiguousarray(image))


def review_router(source: ReviewSource, check_key: Any, api_error: type[Exception]) -> APIRouter:
    """Endpoints of the review page: the items with their marks, thumbnails, and setting a mark."""
    router = APIRouter(prefix="/v1/review")

    def item_or_404(item_id: int) -> dict[str, Any]:
        try:
            return source.item(item_id)
        except DataError as error:
            raise api_error(404, str(error)) from error

    @router.get("/items", summary="Results to review, highest score first, with their marks.")
    async def items(request: Request) -> dict[str, Any]:
        check_key(request)
        marks = source.store.all()
        return {
            "threshold": 0.5,
            "items": [
                {
                    "id": i,
                    "name": Path(item["path"]).name,
                    **{k: item.get(k) for k in ("path", "score", "label", "truth", "defect_type")},
                    "mark": marks.get(item["path"]),
                }
                for i, item in enumerate(source.items)
            ],
        }

    @router.get("/thumbnail/{item_id}", summary="A small PNG of the image.")
    async def thumb(item_id: int, request: Request) -> Response:
        check_key(request)
        try:
            data = thumbnail(item_or_404(item_id)["path"])
        except DataError as error:
            raise api_error(410, f"image of item {item_id} cannot be read any more: {error}") from error
        return Response(data, media_type="image/png")

    @router.put("/marks/{item_id}", summary='Mark an image "good" or "defective" (null clears the mark).')
    async def mark(item_id: int, body: MarkBody, request: Request) -> dict[str, Any]:
        check_key(request)
        item = item_or_404(item_id)
        try:
            source.store.set(item["path"], body.mark)
        except ConfigError as error:
            raise api_error(400, str(error)) from error
        return {"id": item_id, "path": item["path"], "mark": body.mark}

    return router
