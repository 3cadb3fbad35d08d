"""Review marks in SQLite: set, change, clear, refuse bad marks, survive concurrent writers."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from defectlens.engine.marks import FeedbackStore
from defectlens.errors import ConfigError


def test_marks_persist_change_and_clear(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    store.set("/a.png", "good")
    store.set("/b.png", "defective")
    store.set("/a.png", "defective")
    store.set("/b.png", None)
    assert FeedbackStore(tmp_path / "feedback.sqlite").all() == {
        "/a.png": "defective"
    }  # a new handle sees it


def test_bad_mark_is_refused(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    with pytest.raises(ConfigError, match="mark must be one of \\['good', 'defective'\\] or null, got 'ok'"):
        store.set("/a.png", "ok")
    assert store.all() == {}


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "feedback.sqlite"
    FeedbackStore(path)

    def mark(i: int) -> None:
        FeedbackStore(path).set(f"/img{i % 50}.png", "good" if i % 2 else "defective")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(mark, range(400)))
    marks = FeedbackStore(path).all()
    assert len(marks) == 50 and set(marks.values()) <= {"good", "defective"}
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
