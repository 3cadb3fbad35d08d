"""Sources: a watched folder (files written slowly, in pieces, renamed into place; restarts) and a video."""

from __future__ import annotations

import io
import os
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from defectlens.errors import ConfigError
from defectlens.line import FolderSource, StationStore, VideoSource, open_source


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class Collector:
    """Runs a source in a thread and marks each part scored, as the station does after publishing."""

    def __init__(self, source, store: StationStore) -> None:
        self.parts, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self._run, args=(source, store), daemon=True)
        self.thread.start()

    def _run(self, source, store) -> None:
        for batch in source.batches(self.stop, max_batch=4):
            self.parts.extend(batch)
            store.record([], [part.ledger_key for part in batch if part.ledger_key])

    def wait_for(self, n: int, timeout: float = 20.0) -> list:
        deadline = time.time() + timeout
        while len(self.parts) < n and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything scored twice would arrive now
        return self.parts

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_folder_reads_each_file_once_when_complete_across_restarts(tmp_path, make_texture):
    watched, store = tmp_path / "camera", StationStore(tmp_path / "state")
    (watched / "line2").mkdir(parents=True)
    images = {f"p{i}.png": make_texture(300 + i) for i in range(4)}
    data = {name: png_bytes(image) for name, image in images.items()}
    (watched / "p0.png").write_bytes(data["p0.png"])  # there before the watcher starts
    collector = Collector(FolderSource(watched, store, settle_s=0.3), store)
    try:
        with (watched / "p1.png").open("wb") as slow:  # written slowly, in pieces, by one writer
            for start in range(0, len(data["p1.png"]), len(data["p1.png"]) // 4 + 1):
                slow.write(data["p1.png"][start : start + len(data["p1.png"]) // 4 + 1])
                slow.flush()
                time.sleep(0.4)  # longer than the settle time: only the close or decoding tells
        for start in range(0, len(data["p2.png"]), 200):  # appended piece by piece, reopened each time
            with (watched / "line2" / "p2.png").open("ab") as piece:
                piece.write(data["p2.png"][start : start + 200])
            time.sleep(0.02)
        (watched / "p3.png.part").write_bytes(data["p3.png"])  # a temporary name, then renamed
        (watched / ".hidden.png").write_bytes(data["p3.png"])
        os.replace(watched / "p3.png.part", watched / "p3.png")
        parts = collector.wait_for(4)
    finally:
        collector.close()
    names = sorted(os.path.basename(part.name) for part in parts)
    assert names == ["p0.png", "p1.png", "p2.png", "p3.png"]
    for part in parts:
        assert part.error is None and np.array_equal(part.image, images[os.path.basename(part.name)])
    # a restart scores only what is new; a file rewritten under an old name is a new part
    (watched / "p4.png").write_bytes(png_bytes(make_texture(400)))
    collector = Collector(FolderSource(watched, store, settle_s=0.1), store)
    try:
        assert [os.path.basename(p.name) for p in collector.wait_for(1)] == ["p4.png"]
        time.sleep(0.05)  # a new modification time
        (watched / "p0.png").write_bytes(data["p1.png"])
        assert [os.path.basename(p.name) for p in collector.wait_for(2)] == ["p4.png", "p0.png"]
    finally:
        collector.close()


def test_a_file_that_never_decodes_is_reported_once(tmp_path):
    watched, store = tmp_path / "camera", StationStore(tmp_path / "state")
    watched.mkdir()
    (watched / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    collector = Collector(FolderSource(watched, store, settle_s=0.1, give_up_s=0.5), store)
    try:
        parts = collector.wait_for(1, timeout=10)
    finally:
        collector.close()
    assert len(parts) == 1 and parts[0].image is None
    assert "broken.png" in parts[0].error


def test_video_file_gives_every_nth_frame(tmp_path, make_texture):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 72))
    for i in range(20):
        writer.write(make_texture(i))
    writer.release()
    source = open_source(str(clip), StationStore(tmp_path / "state"), every=3)
    assert isinstance(source, VideoSource)
    parts = [part for batch in source.batches(threading.Event()) for part in batch]
    assert [part.name.rsplit("#", 1)[1] for part in parts] == [f"frame{i:08d}" for i in range(1, 21, 3)]
    assert all(part.image.shape == (72, 96, 3) and part.image.dtype == np.uint8 for part in parts)
    # the frames are the video's, in order (MJPG is lossy: compare loosely)
    assert np.abs(parts[1].image.astype(int) - make_texture(3).astype(int)).mean() < 6


def test_source_errors_name_the_source(tmp_path):
    store = StationStore(tmp_path / "state")
    with pytest.raises(ConfigError, match="neither a folder, a video file"):
        open_source(str(tmp_path / "missing"), store)
    with pytest.raises(ConfigError, match="cannot open watch source"):
        open_source("rtsp://127.0.0.1:1/none", store)
    with pytest.raises(ConfigError, match="--every must be >= 1"):
        VideoSource("0", every=0)
    with pytest.raises(ConfigError, match="is not a folder"):
        FolderSource(tmp_path / "missing", store)
