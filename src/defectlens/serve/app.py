"""The inspection service: `POST /v1/predict`, `GET /v1/health`, `GET /v1/model`, `GET /v1/metrics`
(Prometheus text) and `GET /v1/drift` (FastAPI).

Serves an exported artefact without torch (onnxruntime/OpenVINO) or a training run with torch. Every
image goes through the same decode -> RGB -> resize -> model -> calibration path as `defectlens
predict`, so the JSON objects equal the lines of predictions.jsonl. Bad input is a 4xx with a JSON
`error` saying what was wrong, never a 500. Each result also goes to the station's outputs (MQTT,
webhooks, folders, as `defectlens watch` publishes them) and to its drift monitor.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from defectlens import __version__
from defectlens.data.io import as_rgb, decode_image
from defectlens.engine.predict import describe, drawn, open_scorer
from defectlens.engine.runs import CHECKPOINT
from defectlens.errors import DataError, ImageTooLarge
from defectlens.inference.artifact import MANIFEST, sha256
from defectlens.line.drift import DriftMonitor
from defectlens.line.metrics import CONTENT_TYPE
from defectlens.line.sinks import Result
from defectlens.line.station import Outputs, timing
from defectlens.post.prediction import Calibration, Prediction
from defectlens.post.tasks import TASKS
from defectlens.reports.figures import encode_png, overlay
from defectlens.serve.batching import MicroBatcher, ServiceBusy
from defectlens.serve.review import ReviewSource, review_router

logger = logging.getLogger(__name__)

INCLUDES = ("mask", "overlay")
STATIC = Path(__file__).parent / "static"
NUMPY_TYPES = ("application/x-npy", "application/npy")


@dataclass(frozen=True)
class Limits:
    """What one request may carry.

    Attributes:
        max_upload_bytes: request body size.
        max_pixels: pixels of one decoded image (checked from its header, before decoding).
        max_images: images in one request.
    """

    max_upload_bytes: int = 20_000_000
    max_pixels: int = 50_000_000
    max_images: int = 32


@dataclass
class ServedModel:
    """A model behind the service, with what `GET /v1/model` tells about it."""

    predict: Callable[[list[np.ndarray]], Prediction]
    info: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None


def open_served_model(path: str | Path, backend: str = "auto") -> ServedModel:
    """An exported artefact folder (no torch) or a run folder (torch), ready to serve.

    Raises:
        CheckpointError: `path` holds neither, or its files are corrupt.
    """
    path = Path(path)
    scorer = open_scorer(path, backend)
    calibration = scorer.calibration
    if (path / MANIFEST).is_file():
        checksum = scorer.manifest.files[scorer.manifest.model_file]
    else:
        checksum = sha256(path / CHECKPOINT)
    info = {
        "model": scorer.name,
        "runtime": scorer.runtime,
        "input_size": list(scorer.input_resize.size),
        "resize": scorer.input_resize.mode,
        "threshold": calibration.image_threshold,
        "pixel_threshold": calibration.pixel_threshold_value,
        "operating_point": calibration.operating_point(),
        "params": scorer.get_params(),
        "source": str(path.resolve()),
        "sha256": checksum,
        "defectlens_version": __version__,
    }
    return ServedModel(predict=scorer.predict, info=info, calibration=calibration)


class ApiError(Exception):
    """A request the service refuses, with its HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def create_app(
    model: ServedModel,
    api_key: str | None = None,
    limits: Limits = Limits(),
    max_batch: int = 8,
    max_wait_ms: float = 5.0,
    max_queue: int = 64,
    review: ReviewSource | None = None,
    outputs: Outputs | None = None,
) -> FastAPI:
    """The FastAPI application serving `model`, its page at `/`, and the review API when `review` is given.

    Args:
        model: what to serve (`open_served_model`).
        api_key: when set, every endpoint but /v1/health needs it in `X-API-Key` or
            `Authorization: Bearer <key>`.
        limits: request size limits.
        max_batch, max_wait_ms, max_queue: micro-batching (see `MicroBatcher`); max_batch 1 turns it off.
        review: results and marks for the review gallery (`defectlens review`).
        outputs: sinks and drift monitor every result goes to; by default, drift against the model's
            calibration and no sinks.
    """
    if outputs is None:
        drift = DriftMonitor.for_calibration(model.calibration) if model.calibration is not None else None
        outputs = Outputs([], None, drift)
    batcher = MicroBatcher(outputs.metrics.timed(model.predict), max_batch, max_wait_ms, max_queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()
        outputs.close()

    app = FastAPI(
        title="defectlens inspection service",
        version=__version__,
        summary="Score images for defects: image score, label, boxes, optional mask and overlay.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.outputs = outputs

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "detail": error.errors()}, status_code=400)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key")
        bearer = request.headers.get("authorization", "")
        if given is None and bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if given is None:
            raise ApiError(
                401, "this service needs an API key: send it as X-API-Key", {"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "wrong API key", {"WWW-Authenticate": "Bearer"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if review is not None:
        app.include_router(review_router(review, check_key, ApiError))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/health", summary="Liveness: answers without an API key.")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.info.get("model"), "review": review is not None}

    @app.get("/v1/model", summary="What is served: model, input size, thresholds, version, checksum.")
    async def model_info(request: Request) -> dict[str, Any]:
        check_key(request)
        return model.info

    @app.get(
        "/v1/metrics", summary="Prometheus metrics: images by label, model time, drift, spooled messages."
    )
    async def metrics(request: Request) -> Response:
        check_key(request)
        return Response(outputs.metrics.text(), media_type=CONTENT_TYPE)

    @app.get("/v1/drift", summary="Drift of the scores against the good calibration scores, with history.")
    async def drift_state(request: Request) -> dict[str, Any]:
        check_key(request)
        if outputs.drift is None:
            raise ApiError(404, "this model has no calibration scores to compare against: drift is off")
        return outputs.drift.state()

    @app.post(
        "/v1/predict",
        summary="Score one image (raw body) or several (multipart, any field names).",
        description=(
            "Returns {'predictions': [...]}, one predictions.jsonl object per image: path (the upload's "
            "file name), score (normalised, threshold at 0.5), label, raw_score, task, boxes "
            "([x0, y0, x1, y1, score] in original pixels, for task=detection, on anomalous images only; "
            "a normal image lists regions over the pixel threshold as below_image_threshold). "
            "include=mask,overlay adds "
            "base64 PNGs. Images may be PNG, JPEG, BMP, TIFF, or .npy arrays (H, W[, 1|3|4]). "
            "Each result also goes to the service's sinks and drift monitor; publish=false scores "
            "without them (a check by hand, as from the page)."
        ),
    )
    async def predict(
        request: Request, include: str = "", task: str = "detection", min_area: int = 16, publish: bool = True
    ) -> dict:
        check_key(request)
        arrived = time.time()
        wanted = [part.strip() for part in include.split(",") if part.strip()]
        unknown = sorted(set(wanted) - set(INCLUDES))
        if unknown:
            raise ApiError(400, f"unknown include {unknown}: allowed are {list(INCLUDES)}")
        if task not in TASKS:
            raise ApiError(400, f"task must be one of {list(TASKS)}, got '{task}'")
        uploads = await _read_uploads(request, limits)
        images = [_decode(name, data, content_type, limits) for name, data, content_type in uploads]
        try:
            results = await batcher.score(images)
        except ServiceBusy as error:
            raise ApiError(503, f"busy: {error}; retry shortly", {"Retry-After": "1"}) from error
        predictions, published = [], []
        for (name, _, _), image, (prediction, index) in zip(uploads, images, results, strict=True):
            entry, heat, found = describe(name, prediction, index, task, min_area)
            published.append(Result({**entry, "timing": timing(arrived)}, image, heat, found))
            mask, boxes = drawn(found, task)
            if "mask" in wanted:
                entry["mask_png"] = base64.b64encode(encode_png(found.mask)).decode()
            if "overlay" in wanted:
                picture = overlay(image, heat, pred_mask=mask, boxes=boxes)
                entry["overlay_png"] = base64.b64encode(encode_png(picture)).decode()
            predictions.append(entry)
        if publish:
            await asyncio.to_thread(outputs.publish, published)
        return {"predictions": predictions}

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"upload of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"upload is over the limit of {limit:,} bytes")
    return bytes(body)


async def _read_uploads(request: Request, limits: Limits) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, content type) per uploaded image, from a multipart form or the raw body."""
    body = await _read_body(request, limits.max_upload_bytes)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return [("upload", body, content_type)]

    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(
            Headers(raw=[(b"content-type", content_type.encode())]), stream(), max_files=limits.max_images
        ).parse()
    except MultiPartException as error:
        raise ApiError(400, f"cannot read the multipart form: {error.message}") from error
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise ApiError(400, "the multipart form holds no file: send images as file fields")
    if len(files) > limits.max_images:
        raise ApiError(413, f"{len(files)} images in one request, over the limit of {limits.max_images}")
    return [(f.filename or f"upload {i}", await f.read(), f.content_type or "") for i, f in enumerate(files)]


def _decode(name: str, data: bytes, content_type: str, limits: Limits) -> np.ndarray:
    try:
        if content_type in NUMPY_TYPES or name.endswith(".npy"):
            array = _load_npy(name, data)
            if array.shape[0] * (array.shape[1] if array.ndim > 1 else 1) > limits.max_pixels:
                raise ImageTooLarge(
                    f"image {name} of shape {array.shape} is over {limits.max_pixels:,} pixels"
                )
            return as_rgb(array, f"image {name}")
        return decode_image(data, name, limits.max_pixels)
    except ImageTooLarge as error:
        raise ApiError(413, str(error)) from error
    except DataError as error:
        raise ApiError(400, str(error)) from error


def _load_npy(name: str, data: bytes) -> np.ndarray:
    if not data:
        raise DataError(f"cannot read image {name}: it is empty (0 bytes)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"cannot read array {name}: {error}") from error
