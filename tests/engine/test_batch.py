"""Batch scoring on a local Ray: inputs, shards, resume, and a worker that dies mid-run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from defectlens.data import load_mvtec
from defectlens.engine.batch import ScoreWorker, list_inputs, predict_on_ray
from defectlens.errors import ConfigError, DataError
from defectlens.export import export_detector
from defectlens.inference import Inferencer

ray = pytest.importorskip("ray", reason="ray not installed: pip install 'ray[data]'")


class DiesOnce(ScoreWorker):
    """Kills its own process on its first batch, once per test (a marker file remembers)."""

    marker = ""

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("died")
            os._exit(1)
        return super().__call__(batch)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def exported(tiny_mvtec, tmp_path_factory, quick):
    splits = load_mvtec(tiny_mvtec, val_fraction=0.25)
    detector = quick("padim").fit(splits)
    return export_detector(detector, tmp_path_factory.mktemp("batch") / "onnx", "onnx")


def rows_of(out: Path) -> list[dict]:
    return [
        row
        for shard in sorted((out / "shards").glob("*.parquet"))
        for row in pq.read_table(shard).to_pylist()
    ]


def test_list_inputs_reads_folders_globs_and_lists(tiny_mvtec, tmp_path):
    good = sorted(str(p) for p in (tiny_mvtec / "test" / "good").iterdir())
    (tmp_path / "list.txt").write_text("# my images\n" + "\n".join(good[:2]) + "\n")
    (tmp_path / "list.csv").write_text("id,path\n1," + good[2] + "\n")
    found = list_inputs(
        [tmp_path / "list.txt", tmp_path / "list.csv", str(tiny_mvtec / "test" / "good" / "*.png")]
    )
    assert found == good[:3] + [good[3]]  # order kept, duplicates dropped
    assert list_inputs([tiny_mvtec / "test" / "good"]) == good
    with pytest.raises(DataError, match="matches no images"):
        list_inputs([str(tmp_path / "*.png")])


def test_shards_cover_every_input_once_and_match_the_inferencer(local_ray, exported, tiny_mvtec, tmp_path):
    images = list_inputs([tiny_mvtec / "train" / "good", tiny_mvtec / "test" / "scratch"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    manifest = predict_on_ray(
        exported, [*images, broken], tmp_path / "out", workers=2, shard_size=8, batch_size=4
    )
    assert manifest["complete"] and len(manifest["shards"]) == 3
    rows = rows_of(tmp_path / "out")
    assert [r["path"] for r in rows] == [*images, str(broken)]
    expected = Inferencer(exported).predict(images).score
    assert [r["score"] for r in rows[:-1]] == pytest.approx(expected.tolist(), abs=1e-5)
    assert rows[-1]["score"] is None and "cannot read image" in rows[-1]["error"]

    # resume: a lost shard is redone, the others are left alone
    lost = tmp_path / "out" / "shards" / "shard-00001.parquet"
    kept = (tmp_path / "out" / "shards" / "shard-00000.parquet").stat().st_mtime_ns
    lost.unlink()
    saved = json.loads((tmp_path / "out" / "manifest.json").read_text())
    del saved["shards"]["shard-00001.parquet"]
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(saved))
    predict_on_ray(exported, [*images, broken], tmp_path / "out", workers=2, shard_size=8, batch_size=4)
    assert lost.is_file() and (tmp_path / "out" / "shards" / "shard-00000.parquet").stat().st_mtime_ns == kept
    assert [r["path"] for r in rows_of(tmp_path / "out")] == [*images, str(broken)]
    with pytest.raises(ConfigError, match="another input list"):
        predict_on_ray(exported, images[:3], tmp_path / "out", shard_size=8)


def test_a_worker_dying_mid_run_loses_and_duplicates_nothing(local_ray, exported, tiny_mvtec, tmp_path):
    images = list_inputs([tiny_mvtec / "train" / "good", str(tiny_mvtec / "test" / "**" / "*.png")])
    DiesOnce.marker = str(tmp_path / "died")
    manifest = predict_on_ray(
        exported, images, tmp_path / "out", workers=2, shard_size=100, batch_size=4, worker_class=DiesOnce
    )
    assert Path(DiesOnce.marker).read_text() == "died"  # the failure did happen
    paths = [r["path"] for r in rows_of(tmp_path / "out")]
    assert manifest["complete"] and len(paths) == len(images) and len(set(paths)) == len(paths)
    assert all(r["error"] is None for r in rows_of(tmp_path / "out"))
