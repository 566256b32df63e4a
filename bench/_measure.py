"""Measure one case in a fresh process: wall time and peak memory above the process's baseline.

Peak memory is the peak resident set during the case (Linux ``VmHWM``, reset first through
``/proc/self/clear_refs``) minus the resident set when it started: every byte the case touched,
torch's or not, and nothing that imports or set-up touched before. That is the kernel's count,
an instrument the probe does not use: ``training_run`` measures a real training run with it.

    python bench/_measure.py train '{"overrides": [...], "settings": {...}}'
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


BLOCK = 50  # steps of a run whose mean step shows how the machine's speed drifts over the run


def training_run(overrides: list[str], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A real training run in this process (``model.run_training``, what ``stagetune train``
    runs), measured by the kernel: its footprint is the peak resident set over the resident set
    just before the run (after the data is loaded and freed heap pages are given back), so it
    counts the model, the optimizer, every step, the data loader and evaluation. By wall clock
    over the epochs after the first: ``step_seconds``, the mean of the epochs' median steps (a
    full batch's), ``mean_step_seconds``, the mean of every step (an epoch's average batch,
    what a cycle averages), and ``block_mean_steps``, the mean step of each ``BLOCK`` steps in
    turn: the same batches on average, so their spread is the machine's, not the data's."""
    import tempfile

    from model import Trainer, load_dataset, load_train_config, run_training

    steps: list[float] = []
    step = Trainer.train_step

    def timed_step(self: Trainer, batch: Any) -> Any:  # every step of the loop, by wall clock
        t0 = time.perf_counter()
        loss = step(self, batch)
        steps.append(time.perf_counter() - t0)
        return loss

    Trainer.train_step = timed_step  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as out:
        config = load_train_config(
            [*overrides, f"train.output_dir={out}", "train.device=cpu"], settings=settings
        )
        dataset = load_dataset(config)
        base = reset_peak()
        report = run_training(config, dataset=dataset)
        footprint = peak_since_reset() - base
    later = [e for e in (report.epochs[1:] or report.epochs) if e.step_seconds]
    first = report.epochs[0].steps if len(report.epochs) > 1 else 0
    timed = steps[first:]
    blocks = [timed[i : i + BLOCK] for i in range(0, len(timed) - BLOCK + 1, BLOCK)]
    return {
        "footprint_bytes": footprint,
        "step_seconds": statistics.mean(e.step_seconds for e in later),
        "mean_step_seconds": statistics.mean(timed),
        "block_mean_steps": [statistics.mean(b) for b in blocks],
        "steps": sum(e.steps for e in report.epochs),
    }


def training_run_in_subprocess(
    overrides: list[str], settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``training_run`` in a fresh process; raises with its error when it fails."""
    job = json.dumps({"overrides": overrides, "settings": settings or {}})
    out = in_subprocess(__file__, "train", job)
    if "error" in out:
        raise RuntimeError(f"the training run {overrides} failed: {out['error']}")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"]:
        job = json.loads(sys.argv[2])
        print(json.dumps(training_run(job["overrides"], job["settings"] or None)))
