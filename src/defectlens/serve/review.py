"""Review of a run's results: a gallery sorted by score, with an engineer's marks (`engine.marks`).

The cards show the overlays written by `defectlens test` (or `defectlens predict`), so reviewing never
runs the model per card; the page's detail view scores one image through `POST /v1/predict`.
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
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from defectlens.data.io import read_image, read_mask, read_size
from defectlens.engine.marks import FeedbackStore
from defectlens.engine.runs import FEEDBACK_DB, TEST_PREDICTIONS, THUMBNAIL_SIDE
from defectlens.errors import CheckpointError, ConfigError, DataError
from defectlens.reports.figures import encode_png, outline

# pictures sent as stored when they fit the card
SENT_AS_STORED = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class ReviewSource:
    """The images a review shows: a run's test results or a predictions.jsonl, sorted by score.

    Attributes:
        items: one dict per image (path, score, label, raw_score, overlay; truth, defect_type and
            truth_mask for test results), highest score first; its position is the image's id in the API.
        store: where the marks go.
        root: the folder that the items' relative `overlay` paths start from.
    """

    items: list[dict[str, Any]]
    store: FeedbackStore
    root: Path

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
        return ReviewSource(items, FeedbackStore(run / FEEDBACK_DB), source.parent)

    def item(self, item_id: int) -> dict[str, Any]:
        if not 0 <= item_id < len(self.items):
            raise DataError(f"no review item {item_id}: ids run from 0 to {len(self.items) - 1}")
        return self.items[item_id]

    def picture(self, item_id: int) -> Path:
        """What the card of an item shows: its overlay, or the image itself for runs tested before
        `defectlens test` wrote overlays."""
        item = self.item(item_id)
        return self.root / item["overlay"] if item.get("overlay") else Path(item["path"])


class MarkBody(BaseModel):
    mark: str | None


def thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> tuple[bytes, str]:
    """The picture scaled to fit a `side` x `side` box, and its media type: a PNG or JPEG that fits
    already (the overlays of `defectlens test`) is sent as stored, anything else as a PNG.

    Raises:
        DataError: the file is missing or not a readable image.
    """
    path = Path(path)
    media_type = SENT_AS_STORED.get(path.suffix.lower())
    if media_type and max(read_size(path)) <= side:
        return path.read_bytes(), media_type
    image = read_image(path)
    scale = side / max(image.shape[:2])
    if scale < 1:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return encode_png(np.ascontiguousarray(image)), "image/png"


def truth_outline(mask_path: str | Path) -> bytes:
    """PNG of the ground-truth mask's outline on a transparent background, to lay over the image's
    full-size overlay."""
    return encode_png(outline(read_mask(mask_path)))


def review_router(source: ReviewSource, check_key: Any, api_error: type[Exception]) -> APIRouter:
    """Endpoints of the review page: the items with their marks, card pictures, the images and their
    ground-truth outlines, and setting a mark.

    The picture endpoints are plain functions, which FastAPI runs in its thread pool: reading and
    resizing files never holds up the event loop, and so never a `POST /v1/predict`.
    """
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
                    "has_truth_mask": bool(item.get("truth_mask")),
                    "mark": marks.get(item["path"]),
                }
                for i, item in enumerate(source.items)
            ],
        }

    @router.get(
        "/thumbnail/{item_id}", summary="A small picture of the overlay (for older runs, of the image)."
    )
    def thumb(item_id: int, request: Request) -> Response:
        check_key(request)
        item_or_404(item_id)
        try:
            data, media_type = thumbnail(source.picture(item_id))
        except DataError as error:
            raise api_error(410, f"picture of item {item_id} cannot be read any more: {error}") from error
        return Response(data, media_type=media_type)

    @router.get("/image/{item_id}", summary="The image file as stored, to score it again.")
    def image(item_id: int, request: Request) -> FileResponse:
        check_key(request)
        path = Path(item_or_404(item_id)["path"])
        if not path.is_file():
            raise api_error(410, f"image of item {item_id} is gone: {path} does not exist")
        return FileResponse(path)

    @router.get("/truth/{item_id}", summary="The outline of the ground-truth mask, a transparent PNG.")
    def truth(item_id: int, request: Request) -> Response:
        check_key(request)
        mask_path = item_or_404(item_id).get("truth_mask")
        if not mask_path:
            raise api_error(404, f"item {item_id} has no ground-truth mask")
        try:
            data = truth_outline(mask_path)
        except DataError as error:
            raise api_error(410, f"mask of item {item_id} cannot be read any more: {error}") from error
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
