"""Load test of `defectlens serve` on loopback: throughput and latency percentiles per configuration.

Each configuration starts `defectlens serve` as its own process on 127.0.0.1 and a free port, waits for
/v1/health, then sends a fixed number of requests (one image each, raw body) at a fixed concurrency
from an asyncio client, with an overall time limit. Configurations: every given model folder (a run
folder is served by torch, an export folder by its runtime) x micro-batching on (--max-batch) and off
(max batch 1).

    python benchmarks/loadtest.py runs/bench/tile exports/tile-onnx exports/tile-ov \\
        --images ../shared/data/mtd/magnetic_tile/test --requests 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
from local_services import free_port, start_defectlens

from defectlens.data import records_from_paths
from defectlens.inference.artifact import MANIFEST


def start_server(model: Path, port: int, max_batch: int, threads: int) -> subprocess.Popen:
    source = ["--model", str(model)] if (model / MANIFEST).is_file() else ["--run", str(model)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return start_defectlens(
        ["serve", *source, "--max-batch", str(max_batch), "--max-queue", "1024"], port, env
    )


async def hammer(url: str, bodies: list[bytes], n_requests: int, concurrency: int, limit_s: float) -> dict:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(n_requests))
    deadline = time.perf_counter() + limit_s

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        for i in counter:
            if time.perf_counter() > deadline:
                return
            tic = time.perf_counter()
            answer = await client.post(f"{url}/v1/predict", content=bodies[i % len(bodies)])
            if answer.status_code == 200:
                latencies.append((time.perf_counter() - tic) * 1000)
            else:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await client.post(f"{url}/v1/predict", content=bodies[0])  # warm-up, not counted
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    percentiles = (
        np.percentile(latencies, [50, 95, 99]).round().astype(int).tolist() if latencies else [None] * 3
    )
    return {
        "requests_ok": len(latencies),
        "failures": failures,
        "img_s": round(len(latencies) / elapsed, 2),
        **dict(zip(("p50_ms", "p95_ms", "p99_ms"), percentiles, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path, help="run folders and/or export folders")
    parser.add_argument(
        "--images", type=Path, nargs="+", required=True, help="image files or folders to send"
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8, help="micro-batching setting compared with 1")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds per configuration at most")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="append one JSON line per configuration")
    args = parser.parse_args()
    paths = [r.path for r in records_from_paths(args.images)]
    bodies = [p.read_bytes() for p in paths[:: max(1, len(paths) // 64)]]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; server threads {args.threads}; "
        f"{args.requests} requests at concurrency {args.concurrency}, one image each "
        f"({len(bodies)} distinct files, mean {np.mean([len(b) for b in bodies]) / 1e3:.0f} kB); loopback\n"
    )
    print("| model | runtime | micro-batching | img/s | p50 ms | p95 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for max_batch in (args.max_batch, 1):
            port = free_port()
            server = start_server(model, port, max_batch, args.threads)
            try:
                url = f"http://127.0.0.1:{port}"
                info = httpx.get(f"{url}/v1/model", timeout=10).json()
                result = asyncio.run(hammer(url, bodies, args.requests, args.concurrency, args.time_limit))
            finally:
                server.send_signal(signal.SIGINT)
                server.wait(timeout=30)
            row = {"model": info["model"], "runtime": info["runtime"], "max_batch": max_batch, **result}
            batching = f"on (max {max_batch})" if max_batch > 1 else "off"
            cells = [row["model"], row["runtime"], batching, row["img_s"], row["p50_ms"], row["p95_ms"]]
            print("| " + " | ".join(map(str, [*cells, row["p99_ms"], row["failures"]])) + " |", flush=True)
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps({**row, "concurrency": args.concurrency}) + "\n")


if __name__ == "__main__":
    main()
