"""Atom budgets on real complexes: the probe's budget against every real batch packed to it.

    python bench/atoms.py [--root ../shared/data/pdbbind-mini] [--epochs 6] [--cycle 40]

For each model size, on this machine's CPU with a declared budget, on 600-atom worst-case
complexes:

- the probe: its fixed batch (every complex at 600 atoms), its atom budget, its steps, and its
  prediction of the step time on batches of ROOT packed to the budget (``stagetune probe --data``);
- every real batch of ``--epochs`` shuffled epochs of ROOT's complexes packed to the budget, each
  step's peak measured (the probe's own measurement): how many are over the limit (the goal is
  none), the largest and the mean share of the limit they use (goal: at least 80 %);
- the same batches timed: their mean step (what a cycle averages) against the prediction, and
  a ``--cycle``-step cycle on them (goal: within 10 % on this CPU);
- complexes per second at the budget against fixed batches of the probe's batch size, and the
  largest share of the limit those fixed batches use.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DynamicBatchSampler

from model import load_dataset, load_train_config
from tuner import Probe, ProbeSample, device_for, discover, on_data

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "pdbbind-mini"
CASES = [  # name, overrides, CPU budget
    ("16 ch x 2 layers", ["model.hidden_channels=16", "model.num_layers=2", "model.num_heads=2",
                          "model.num_rbf=8"], "384MiB"),
    ("32 ch x 2 layers", ["model.hidden_channels=32", "model.num_layers=2", "model.num_heads=4",
                          "model.num_rbf=16"], "768MiB"),
    ("32 ch x 3 layers", ["model.hidden_channels=32", "model.num_layers=3", "model.num_heads=4",
                          "model.num_rbf=16"], "1GiB"),
]  # fmt: skip


def real_batches(complexes: list, budget: int, epochs: int) -> list[Batch]:
    """Every batch of ``epochs`` epochs, each shuffled anew (seeds 0, 1, ...), packed to the
    budget."""
    batches = []
    for epoch in range(epochs):
        order = torch.randperm(len(complexes), generator=torch.Generator().manual_seed(epoch))
        shuffled = [complexes[i] for i in order.tolist()]
        for pack in DynamicBatchSampler(shuffled, max_num=budget, mode="node"):
            batches.append(Batch.from_data_list([shuffled[i] for i in pack]))
    return batches


def run_case(name: str, overrides: list[str], budget: str, root: Path, args) -> str:
    config = load_train_config([*overrides, "optimizer.log_config=false"])
    data = load_train_config(
        [*overrides, "optimizer.log_config=false"],
        settings={"data.source": str(root), "data.max_atoms": 600},
    )
    ds = load_dataset(data)
    complexes = [*ds.train, *ds.val]
    sample = ProbeSample.synthetic(600, config.model.cutoff, config.model.max_num_neighbors)
    with Probe(config, device_for(discover(budget), "cpu"), sample) as probe:
        t0 = time.perf_counter()
        result = probe.find_max_batch()
        assert result.max_atoms_per_batch is not None
        figures = on_data(probe, complexes, result)
        probe_seconds = time.perf_counter() - t0
        steps = probe.steps
        batches = real_batches(complexes, result.max_atoms_per_batch, args.epochs)
        trainer = probe.trainer
        times = []
        for b in batches:
            t = time.perf_counter()
            trainer.train_step(b)
            times.append(time.perf_counter() - t)
        cycle = [batches[i % len(batches)] for i in range(args.cycle)]
        t = time.perf_counter()
        for b in cycle:
            trainer.train_step(b)
        cycle_seconds = time.perf_counter() - t
        fixed = [Batch.from_data_list(complexes[i : i + result.max_batch_size])
                 for i in range(0, len(complexes), result.max_batch_size)]  # fmt: skip
        t = time.perf_counter()
        for b in fixed:
            trainer.train_step(b)
        fixed_rate = len(complexes) / (time.perf_counter() - t)
        peaks = [trainer.step_peak(b) for b in batches]
        fixed_peak = max(trainer.step_peak(b) for b in fixed)
    limit = result.limit_bytes
    shares = [p / limit for p in peaks]
    measured = statistics.mean(times)  # a cycle's average step over the epochs' batches
    predicted_cycle = args.cycle * figures.step_seconds
    sizes = [b.num_graphs for b in batches]
    cells = [
        name, budget, result.max_batch_size, f"{result.max_atoms_per_batch:,}", steps,
        f"{probe_seconds:.0f} s", len(batches), f"{min(sizes)}-{max(sizes)}",
        sum(p > limit for p in peaks), f"{max(shares):.1%}", f"{statistics.mean(shares):.1%}",
        f"{figures.step_seconds:.3f} s", f"{measured:.3f} s",
        f"{figures.step_seconds / measured - 1:+.1%}", f"{predicted_cycle:.1f} s",
        f"{cycle_seconds:.1f} s", f"{predicted_cycle / cycle_seconds - 1:+.1%}",
        f"{figures.throughput:.1f}", f"{sum(sizes) / sum(times):.1f}", f"{fixed_rate:.1f}",
        f"{fixed_peak / limit:.1%}",
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--epochs", type=int, default=6, help="shuffled epochs of real batches")
    parser.add_argument("--cycle", type=int, default=40, help="steps of the timed cycle")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(
        "| model | budget | fixed batch | atom budget | probe steps | probe time | real batches "
        "| complexes a batch | over the limit | largest peak / limit | mean peak / limit | "
        "predicted step | measured step | error | predicted cycle | measured cycle | error | "
        "predicted complexes/s | measured complexes/s | fixed batches: complexes/s | "
        "fixed batches: largest peak / limit |"
    )
    print("|---|---|" + "---:|" * 5 + "---|" + "---:|" * 13)
    for name, overrides, budget in CASES:
        print(run_case(name, overrides, budget, args.root, args), flush=True)


if __name__ == "__main__":
    main()
