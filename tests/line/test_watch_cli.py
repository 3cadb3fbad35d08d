"""`defectlens watch` from the command line: a generated video to a folder, and its errors."""

from __future__ import annotations

import json

import cv2
from typer.testing import CliRunner

from defectlens.cli import app


def test_watch_a_video_file_to_a_folder(tmp_path, station_model, make_texture):
    _, export = station_model
    clip = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 72))
    for i in range(12):
        writer.write(make_texture(i))
    writer.release()
    out = tmp_path / "results"
    result = CliRunner().invoke(
        app,
        ["watch", str(clip), "--model", str(export), "--every", "4", "--out", str(out), "--state",
         str(tmp_path / "state"), "--task", "segmentation"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["path"].rsplit("#", 1)[1] for line in lines] == [
        "frame00000001",
        "frame00000005",
        "frame00000009",
    ]
    assert all((out / line["overlay"]).is_file() and (out / line["mask"]).is_file() for line in lines)
    assert "3 parts scored" in result.output and f"{clip}#frame00000005" in result.output


def test_watch_errors_are_one_line(tmp_path, station_model):
    run, export = station_model
    runner = CliRunner()
    cases = [
        (["watch", str(tmp_path)], "give exactly one of --run"),
        (["watch", str(tmp_path / "nowhere"), "--run", str(run)], "neither a folder, a video file"),
        (["watch", str(tmp_path), "--model", str(export), "--mqtt", "mqtt://host"], "--mqtt must look like"),
        (["watch", str(tmp_path), "--model", str(export), "--task", "boxes"], "task must be one of"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--state", str(tmp_path / "state")])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output
