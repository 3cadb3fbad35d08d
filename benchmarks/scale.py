"""Plain `predict` vs Ray batch scoring with 1 and 2 workers: images/s on the same images and model.

Each configuration runs in its own process (a fresh Ray for the Ray ones, its start-up included in the
wall time and also reported apart). Plain predict here means the same rows without pictures: the model
over all images in one process with `--threads` threads.

    python benchmarks/scale.py exports/tile-onnx --images '../shared/data/mtd/magnetic_tile/test/*/*.jpg'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_job(job: dict) -> dict:
    from defectlens.engine.batch import list_inputs

    paths = list_inputs(job["images"])
    if job["engine"] == "local":
        from defectlens.engine.predict import open_scorer

        scorer = open_scorer(job["model"], threads=job["threads"])
        start = time.perf_counter()
        n = sum(len(b.prediction.score) for b in scorer.iter_predict(paths))
        return {"images": n, "seconds": time.perf_counter() - start, "startup_s": 0.0}
    import ray

    from defectlens.engine.batch import predict_on_ray

    start = time.perf_counter()
    ray.init(num_cpus=job["workers"], include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        manifest = predict_on_ray(job["model"], paths, Path(folder) / "out", workers=job["workers"])
    return {"images": manifest["images"], "seconds": time.perf_counter() - start, "startup_s": startup}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", help="run folder or export folder")
    parser.add_argument("--images", nargs="+", help="folders, globs or list files")
    parser.add_argument("--threads", type=int, default=2, help="threads of plain predict")
    parser.add_argument("--out", type=Path, help="append JSON lines here")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        print(json.dumps(run_job(json.loads(args.job))))
        return
    if not args.model or not args.images:
        parser.error("give the model folder and --images")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; model {args.model}\n")
    print("| engine | workers | images | wall s | img/s | Ray start-up s | img/s after start-up |")
    print("|---|---|---|---|---|---|---|")
    jobs = [
        {"engine": "local", "workers": 1},
        {"engine": "ray", "workers": 1},
        {"engine": "ray", "workers": 2},
    ]
    for job in jobs:
        job = {**job, "model": args.model, "images": args.images, "threads": args.threads}
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads if job["engine"] == "local" else 1)}
        done = subprocess.run(
            [sys.executable, __file__, "--job", json.dumps(job)], capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            print(f"| {job['engine']} | failed: {done.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rate, steady = r["images"] / r["seconds"], r["images"] / (r["seconds"] - r["startup_s"])
        label = "plain predict" if job["engine"] == "local" else "ray"
        workers = f"1 process, {args.threads} threads" if job["engine"] == "local" else job["workers"]
        cells = [label, workers, r["images"], f"{r['seconds']:.1f}", f"{rate:.1f}", f"{r['startup_s']:.1f}"]
        print("| " + " | ".join(map(str, [*cells, f"{steady:.1f}"])) + " |", flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps({**job, **r}) + "\n")


if __name__ == "__main__":
    main()
