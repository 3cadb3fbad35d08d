"""One line that says which CPU a benchmark ran on.

The project's VM is not always the same host: on some days it is an AMD EPYC with AVX2 only, on others
an Intel Xeon with AVX-512, VNNI and AMX. Speeds (INT8 above all) differ between them by 2x or more, so
every benchmark output names the CPU and the instruction sets that decide its speed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Instruction sets that change what float32, FP16 and INT8 kernels can do.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_fp16", "amx_int8")


def _cpuinfo() -> dict[str, str]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def describe_machine() -> str:
    """E.g. 'Intel(R) Xeon(R) Processor, 2 CPUs, avx2 avx512f avx512_vnni amx_int8'."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    present = [flag for flag in SPEED_FLAGS if flag in flags] or ["flags unknown"]
    cpu = info.get("model name") or platform.processor() or platform.machine()
    return f"{cpu}, {len(os.sched_getaffinity(0))} CPUs, {' '.join(present)}"
