"""Measure one case in a fresh process: wall time and peak memory above the process's baseline.

Peak memory is the peak resident set during the case (Linux ``VmHWM``, reset first through
``/proc/self/clear_refs``) minus the resident set when it started: every byte the case touched,
torch's or not, and nothing that imports or set-up touched before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> int:
    """Reset the peak resident set to the current one; returns the current one."""
    gc.collect()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc_trim(0)  # give freed heap back, so the case cannot hide in it
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def peak_since_reset() -> int:
    return _status_bytes("VmHWM")


def timed(run: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median and spread of ``repeats`` timed calls after ``warmup`` calls; peak memory of all."""
    base = reset_peak()
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "peak_bytes": peak_since_reset() - base,
    }


def in_subprocess(script: str, *args: str, timeout: int = 1800) -> dict[str, Any]:
    """Run ``python script args`` and parse the JSON object it prints last."""
    result = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        killed = result.returncode == -9
        why = "killed (SIGKILL: out of memory)" if killed else f"exit {result.returncode}"
        return {"error": f"{why} {last}".strip()}
    return json.loads(result.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"
