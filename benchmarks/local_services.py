"""What the benchmarks that drive a real server share: a free loopback port, and a `defectlens` command
started in its own process and waited for until it answers /v1/health."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_defectlens(arguments: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    """`defectlens ARGUMENTS --port PORT` (serve or review) once it answers /v1/health on 127.0.0.1."""
    command = [sys.executable, "-m", "defectlens", *arguments, "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"defectlens {arguments[0]} exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"defectlens {arguments[0]} did not start within 120 s")
