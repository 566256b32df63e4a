"""Whole ``stagetune optimize`` jobs, timed end to end, each in a fresh process with its own local
Ray instance (start-up included, as a user sees it).

- quick: the quick preset, all three stages (the README's first command);
- concurrency: one stage's tune search with 1 and with 2 trials at once;
- asha: the same tune search with ASHA (grace 1, reduction 2) and without it (a grace period of
  the whole budget: no trial is ever stopped early), same searcher seed.

    python bench/optimize.py [quick|concurrency|asha ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from typing import Any

# trials that train for seconds on 2 cores: more complexes than the quick preset's 256
LONGER = ["data.num_synthetic=400", "model.num_heads=2", "optimizer.warmup_steps=5"]


def run(*args: str) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as storage:
        t0 = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.cli",
                "-q",
                "optimize",
                "--storage",
                storage,
                "--json",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return seconds, json.loads(done.stdout)


def quick(repeats: int = 3) -> None:
    """The quick preset, ``repeats`` times (each its own job id and Ray instance): its time, and
    what each stage's tune search learned on the preset's synthetic complexes."""
    print("| run | wall | job |\n|---|---:|---:|")
    learned = []
    for i in range(repeats):
        seconds, result = run("--preset", "quick")
        job = result["provenance"]["elapsed_seconds"]
        print(f"| quick preset, 3 stages, run {i + 1} | {seconds:.0f} s | {job:.0f} s |")
        learned += [(i + 1, stage, a["validation"]) for stage, a in result["stages"].items()]
    print("\n| run | stage | validation loss (MSE) | predicting the mean | Pearson r | verdict |")
    print("|---:|---|---:|---:|---:|---|")
    for i, stage, v in learned:
        interval = f"{v['val_loss']:.3f} ± {1.96 * v['val_loss_se']:.3f}"
        print(
            f"| {i} | {stage} | {interval} | {v['baseline_loss']:.3f} | "
            f"{v['val_pearson']:.2f} | {v['verdict']} |"
        )


def concurrency() -> None:
    args = [
        "--preset",
        "quick",
        "--stages",
        "prototyping",
        "--fit-trials",
        "4",
        "--tune-trials",
        "4",
        "--max-epochs",
        "4",
        "--grace-period",
        "4",
        *LONGER,
    ]
    walls = {}
    for n in (1, 2):
        walls[n], result = run(*args, "--max-concurrent", str(n))
        print(
            f"| {n} trial(s) at once | {walls[n]:.0f} s | "
            f"{result['provenance']['elapsed_seconds']:.0f} s |"
        )
    print(f"speed-up: {walls[1] / walls[2]:.2f}x")


def asha() -> None:
    base = [
        "--preset",
        "quick",
        "--stages",
        "prototyping",
        "--fit-trials",
        "2",
        "--tune-trials",
        "8",
        "--max-epochs",
        "6",
        "--max-concurrent",
        "2",
        *LONGER,
    ]
    for label, extra in (
        ("ASHA (grace 1, reduction 2)", ["--grace-period", "1", "--reduction-factor", "2"]),
        ("no early stopping", ["--grace-period", "6"]),
    ):
        seconds, result = run(*base, *extra)
        answer = result["stages"]["prototyping"]
        v = answer["validation"]
        print(
            f"| {label} | {seconds:.0f} s | {v['stopped_early']} of {v['trials']} | "
            f"{answer['optimizer']['name']}, {answer['scheduler']['name']}, "
            f"lr {answer['optimizer']['lr']:.2e} | {v['val_loss']:.4f} |"
        )


def main() -> None:
    chosen = sys.argv[1:] or ["quick", "concurrency", "asha"]
    for name in chosen:
        {"quick": quick, "concurrency": concurrency, "asha": asha}[name]()


if __name__ == "__main__":
    main()
