"""The probe against power-of-two-then-bisect and brute force, and its predictions against a run.

For each model size, on this machine's CPU with a declared budget:

- ours: ``Probe.find_max_batch`` (memory line from batches 1 and 2, one verification step,
  timed steps at the answer);
- bisect: batch 1, 2, 4, ... until a trial fails, then bisection between the last success and
  the first failure; each trial is 3 training steps (one measured for memory, two timed), a
  failing trial stops at its first step;
- brute force: every batch from 1 up, one step each, until one fails: the true largest batch.

All three measure with the same ``Probe.measure`` and count every training step, warm-up included.
Then the recommended batch is trained for a short real cycle, on the worst-case batch and on
real-size synthetic data, and the predicted peak and cycle time are compared with what happened.

    python bench/probe.py [--cycle 40]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch_geometric.loader import DataLoader

from model import load_train_config, synthetic_complexes
from tuner import Probe, ProbeSample, device_for, discover

CASES = [  # name, overrides, CPU budget, atoms per complex
    ("16ch x 2 layers", ["model.hidden_channels=16", "model.num_layers=2", "model.num_heads=2",
                         "model.num_rbf=8"], "256MiB", 80),
    ("32ch x 3 layers", ["model.hidden_channels=32", "model.num_layers=3", "model.num_heads=4",
                         "model.num_rbf=16"], "512MiB", 80),
    ("64ch x 4 layers", ["model.hidden_channels=64", "model.num_layers=4", "model.num_heads=8",
                         "model.num_rbf=32"], "1GiB", 120),
]  # fmt: skip


def new_probe(overrides, budget, atoms):
    config = load_train_config([*overrides, "optimizer.log_config=false"])
    sample = ProbeSample.synthetic(atoms, config.model.cutoff, config.model.max_num_neighbors)
    return Probe(config, device_for(discover(budget), "cpu"), sample)


def bisect(probe: Probe, max_batch: int = 4096) -> int:
    good, bad, b = 0, None, 1
    while bad is None and b <= max_batch:
        if probe.measure(b, timed_steps=2).fits:
            good, b = b, b * 2
        else:
            bad = b
    bad = bad or max_batch + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        if probe.measure(mid, timed_steps=2).fits:
            good = mid
        else:
            bad = mid
    return good


def brute(probe: Probe) -> int:
    b = 1
    while probe.measure(b, timed_steps=0).fits:
        b += 1
    return b - 1


def real_cycle(probe: Probe, batch_size: int, steps: int, worst_case: bool) -> tuple[float, int]:
    """Wall time of ``steps`` real training steps, and the peak of 5 more, measured."""
    trainer = probe.trainer
    if worst_case:
        batches = [probe.sample.batch(batch_size)] * (steps + 5)
    else:
        data = synthetic_complexes(batch_size * 8, probe.sample.atoms, seed=1)
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)
        batches = [b for _ in range(steps // 8 + 2) for b in loader][: steps + 5]
    t0 = time.perf_counter()
    for batch in batches[:steps]:
        trainer.train_step(batch)
    seconds = time.perf_counter() - t0
    peak = max(trainer.step_peak(batch) for batch in batches[steps:])
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycle", type=int, default=40, help="steps of the real cycle")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        "| model | atoms | budget | true largest | ours: batch | ours: steps | bisect: batch "
        "| bisect: steps | brute force: steps | ours / bisect |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    checks = []
    for name, overrides, budget, atoms in CASES:
        with new_probe(overrides, budget, atoms) as p:
            truth = brute(p)
            brute_steps = p.steps
        with new_probe(overrides, budget, atoms) as p:
            b_bisect = bisect(p)
            bisect_steps = p.steps
        with new_probe(overrides, budget, atoms) as p:
            result = p.find_max_batch()
            for worst in (True, False):
                seconds, peak = real_cycle(p, result.max_batch_size, args.cycle, worst)
                checks.append((name, worst, result, seconds, peak))
        print(
            f"| {name} | {atoms} | {budget} | {truth} | {result.max_batch_size} | "
            f"{result.probe_steps} | {b_bisect} | {bisect_steps} | {brute_steps} | "
            f"{result.probe_steps / bisect_steps:.2f} |",
            flush=True,
        )
    print(
        f"\n| model | real cycle data | batch | predicted peak MiB | measured peak MiB | "
        f"predicted {args.cycle}-step cycle | measured | error |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, worst, r, seconds, peak in checks:
        predicted = args.cycle * r.step_seconds
        print(
            f"| {name} | {'worst case' if worst else 'real sizes'} | {r.max_batch_size} | "
            f"{r.peak_bytes / 2**20:.1f} | {peak / 2**20:.1f} | {predicted:.2f} s | "
            f"{seconds:.2f} s | {100 * (predicted - seconds) / seconds:+.1f} % |",
            flush=True,
        )


if __name__ == "__main__":
    main()
