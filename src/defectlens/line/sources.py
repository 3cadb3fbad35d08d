"""What the station scores: new files in a folder, or frames of a camera, a video file or a stream.

A folder's files are picked up as they arrive (`watchdog`), and read only once complete: after a close
event, a rename into place, or `settle_s` without change, and only if they decode; a file still
undecodable `give_up_s` after its last change is reported as a bad file. The station store remembers
every file scored (by its path, size and modification time), so each is scored once across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from defectlens.data.io import IMAGE_SUFFIXES
from defectlens.engine.predict import Decoded, read_decoded
from defectlens.errors import ConfigError
from defectlens.line.store import StationStore

logger = logging.getLogger(__name__)

POLL_S = 0.05
# watchdog event types that mean a file's content may have changed (reading it fires "opened" too)
WRITE_EVENTS = ("created", "modified", "moved", "closed")
# A writer closed the file, or renamed it into place (the atomic way to deliver one): read it at once.
COMPLETE_EVENTS = ("closed", "moved")


@dataclass
class Part(Decoded):
    """One image to score (or why it cannot be read), with when it arrived.

    Attributes:
        name: the file path, or `SOURCE#frame00000042` for a frame.
        arrived: when it was complete (unix seconds).
        ledger_key: (source, key) the store marks as scored once it is published.
    """

    arrived: float = 0.0
    ledger_key: tuple[str, str] | None = None


@dataclass
class _Pending:
    changed: float  # last event
    closed: bool = False  # a writer closed it since
    retry_at: float = 0.0  # after a failed decode


class FolderSource:
    """New image files under `folder` (and its subfolders), including those there at start.

    Args:
        folder: the folder the camera software writes into.
        store: remembers what was scored.
        settle_s: how long a file must stay unchanged (without a close event) before it is read.
        give_up_s: how long after its last change an undecodable file is reported as bad.
    """

    def __init__(
        self, folder: str | Path, store: StationStore, settle_s: float = 0.5, give_up_s: float = 30.0
    ):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise ConfigError(f"watch source {folder} is not a folder")
        if settle_s < 0 or give_up_s < settle_s:
            raise ConfigError(f"need 0 <= settle_s <= give_up_s, got {settle_s} and {give_up_s}")
        self.store, self.settle_s, self.give_up_s = store, settle_s, give_up_s
        self.id = str(self.folder)
        self._pending: dict[Path, _Pending] = {}
        self._lock = threading.Lock()

    def _wanted(self, path: Path) -> bool:
        relative = path.relative_to(self.folder).parts if path.is_relative_to(self.folder) else ()
        return (
            bool(relative)
            and path.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in relative)
        )

    def _on_event(self, event) -> None:  # watchdog's FileSystemEvent
        if event.is_directory:
            return
        path = Path(event.dest_path if event.event_type == "moved" else event.src_path)
        with self._lock:
            if event.event_type == "deleted":
                self._pending.pop(path, None)
            elif event.event_type in WRITE_EVENTS and self._wanted(path):
                entry = self._pending.setdefault(path, _Pending(time.time()))
                entry.changed = time.time()
                entry.closed = event.event_type in COMPLETE_EVENTS

    def batches(self, stop: threading.Event, max_batch: int = 8) -> Iterator[list[Part]]:
        """Lists of up to `max_batch` complete files, as they become ready, until `stop` is set."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        handler = FileSystemEventHandler()
        handler.on_any_event = self._on_event
        observer = Observer()
        observer.schedule(handler, str(self.folder), recursive=True)
        observer.start()
        try:
            # Files already there (a backlog, or written while the station was down) count as changed at
            # their modification time.
            with self._lock:
                for path in sorted(self.folder.rglob("*")):
                    if self._wanted(path) and path.is_file():
                        self._pending.setdefault(path, _Pending(0.0))
            while not stop.is_set():
                ready = self._ready(max_batch)
                if ready:
                    yield ready
                else:
                    stop.wait(POLL_S)
        finally:
            observer.stop()
            observer.join()

    def idle(self) -> bool:
        """No file is waiting to become complete."""
        with self._lock:
            return not self._pending

    def _ready(self, limit: int) -> list[Part]:
        parts: list[Part] = []
        now = time.time()
        with self._lock:
            candidates = sorted(self._pending.items(), key=lambda item: item[1].changed)
        for path, entry in candidates:
            if len(parts) == limit:
                break
            part = self._check(path, entry, now)
            if part is not None:
                parts.append(part)
        return parts

    def _check(self, path: Path, entry: _Pending, now: float) -> Part | None:
        try:
            status = path.stat()
        except OSError:  # moved away or deleted before it was read
            self._drop(path, entry)
            return None
        quiet = now - max(entry.changed, status.st_mtime)
        if now < entry.retry_at or (quiet < self.settle_s and not entry.closed):
            return None  # not complete yet: checked again at the next poll, without touching the ledger
        key = (self.id, f"{path.relative_to(self.folder)}|{status.st_size}|{status.st_mtime_ns}")
        if self.store.is_scored(*key):
            self._drop(path, entry)
            return None
        decoded = read_decoded(path)
        if decoded.error is not None and quiet < self.give_up_s:  # most likely still being written
            entry.retry_at, entry.closed = now + max(self.settle_s, POLL_S), False
            return None
        self._drop(path, entry)
        return Part(**vars(decoded), arrived=now, ledger_key=key)

    def _drop(self, path: Path, entry: _Pending) -> None:
        with self._lock:
            if self._pending.get(path) is entry:
                del self._pending[path]


class VideoSource:
    """Every `every`-th frame of a camera (device index), a video file or a stream URL (e.g. RTSP).

    A video file ends the watch at its end; a camera or stream that stops delivering is reopened.
    """

    def __init__(self, spec: str | int, every: int = 1, reopen_s: float = 1.0):
        if every < 1:
            raise ConfigError(f"--every must be >= 1, got {every}")
        self.spec = int(spec) if str(spec).isdigit() else str(spec)
        self.every, self.reopen_s = every, reopen_s
        self.is_file = isinstance(self.spec, str) and Path(self.spec).is_file()
        self.id = f"camera {self.spec}" if isinstance(self.spec, int) else self.spec
        self._capture = self._open()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.spec)
        if not capture.isOpened():
            raise ConfigError(
                f"cannot open watch source {self.spec!r} as a camera, video file or stream "
                "(OpenCV VideoCapture)"
            )
        return capture

    def idle(self) -> bool:
        return False

    def batches(self, stop: threading.Event, max_batch: int = 1) -> Iterator[list[Part]]:
        """One frame at a time (the latest matters on a live camera), until `stop` or the file's end."""
        index = 0
        try:
            while not stop.is_set():
                start = time.perf_counter()
                ok, frame = self._capture.read()
                if not ok:
                    if self.is_file:
                        return
                    logger.warning("%s delivered no frame; reopening in %.0f s", self.id, self.reopen_s)
                    self._capture.release()
                    stop.wait(self.reopen_s)
                    self._capture = self._reopen(stop)
                    continue
                index += 1
                if (index - 1) % self.every:
                    continue
                image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                read_ms = 1000 * (time.perf_counter() - start)
                yield [Part(f"{self.id}#frame{index:08d}", image, read_ms, arrived=time.time())]
        finally:
            self._capture.release()

    def _reopen(self, stop: threading.Event) -> cv2.VideoCapture:
        while not stop.is_set():
            capture = cv2.VideoCapture(self.spec)
            if capture.isOpened():
                return capture
            stop.wait(self.reopen_s)
        return cv2.VideoCapture()


def open_source(
    spec: str, store: StationStore, every: int = 1, settle_s: float = 0.5
) -> FolderSource | VideoSource:
    """A folder, a camera index, a video file or a stream URL."""
    if Path(spec).is_dir():
        return FolderSource(spec, store, settle_s)
    if str(spec).isdigit() or Path(spec).is_file() or "://" in spec:
        return VideoSource(spec, every)
    raise ConfigError(
        f"watch source '{spec}' is neither a folder, a video file, a camera index nor a stream URL"
    )
