"""Atom budgets on real complexes: the probe's budget and step against real training runs.

    python bench/atoms.py [--root ../shared/data/pdbbind-mini] [--epochs 20] [--repeats 5]

For each model size, on this machine's CPU with a declared budget, on 600-atom worst-case
complexes:

- the probe, ``--repeats`` times in a row, each a fresh ``Probe``: its fixed batch, its atom
  budget, its steps, and its prediction of the step on ROOT's batches packed to the budget
  (``stagetune probe --data``); the spread of those predictions (goal: within 5 % of each
  other);
- a real training run at the budget in a fresh process (``model.run_training``, as
  ``stagetune train --data ROOT train.max_atoms_per_batch=BUDGET`` runs it, ``--epochs``
  epochs): its footprint by the kernel's count (the peak resident set over the resident set just
  before the run, after freed heap pages are given back; it counts the model, the optimizer, the
  data loader and evaluation), against the probe's predicted footprint and its limit (goal:
  under the limit, within 10 % of the prediction); its mean step by wall clock over the epochs
  after the first, against each prediction (goal: within 10 %);
- complexes per second at the budget against fixed batches of the probe's batch size (both
  timed here on the same batches of real complexes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _measure import mib, training_run_in_subprocess
from torch_geometric.data import Batch

from model import load_dataset, load_train_config
from tuner import Probe, ProbeSample, device_for, discover, on_data

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "pdbbind-mini"
CASES = [  # name, model knobs (channels, layers, heads, rbf), CPU budget
    ("16 ch x 2 layers", (16, 2, 2, 8), "384MiB"),
    ("32 ch x 2 layers", (32, 2, 4, 16), "768MiB"),
    ("32 ch x 3 layers", (32, 3, 4, 16), "1GiB"),
]


def overrides(knobs: tuple[int, int, int, int]) -> list[str]:
    channels, layers, heads, rbf = knobs
    return [
        f"model.hidden_channels={channels}",
        f"model.num_layers={layers}",
        f"model.num_heads={heads}",
        f"model.num_rbf={rbf}",
        "optimizer.log_config=false",
    ]


def data_config(knobs: tuple[int, int, int, int], root: Path, *extra: str):
    return load_train_config(
        [*overrides(knobs), *extra], settings={"data.source": str(root), "data.max_atoms": 600}
    )


def probe_once(knobs: tuple[int, int, int, int], budget: str, complexes: list) -> dict:
    config = load_train_config(overrides(knobs))
    sample = ProbeSample.synthetic(600, config.model.cutoff, config.model.max_num_neighbors)
    with Probe(config, device_for(discover(budget), "cpu"), sample) as probe:
        t0 = time.perf_counter()
        result = probe.find_max_batch()
        assert result.max_atoms_per_batch is not None
        figures = on_data(probe, complexes, result)
        return {
            "result": result,
            "figures": figures,
            "seconds": time.perf_counter() - t0,
            "steps": probe.steps,
            "fixed_rate": fixed_rate(probe, complexes, result.max_batch_size),
            "budget_rate": budget_rate(probe, complexes, result.max_atoms_per_batch),
        }


def fixed_rate(probe: Probe, complexes: list, batch_size: int) -> float:
    batches = [
        Batch.from_data_list(complexes[i : i + batch_size])
        for i in range(0, len(complexes), batch_size)
    ]
    t = time.perf_counter()
    for b in batches:
        probe.trainer.train_step(b)
    return len(complexes) / (time.perf_counter() - t)


def budget_rate(probe: Probe, complexes: list, budget: int) -> float:
    from torch_geometric.loader import DynamicBatchSampler

    packs = [p for p in DynamicBatchSampler(complexes, max_num=budget, mode="node")]  # no len()
    t = time.perf_counter()
    for pack in packs:
        probe.trainer.train_step(Batch.from_data_list([complexes[i] for i in pack]))
    return len(complexes) / (time.perf_counter() - t)


def run_case(name: str, knobs: tuple[int, int, int, int], budget: str, args) -> str:
    complexes = list(load_dataset(data_config(knobs, args.root)).train)  # what the run trains on
    probes = [probe_once(knobs, budget, complexes) for _ in range(args.repeats)]
    first = probes[0]["result"]
    predicted = [p["figures"].step_seconds for p in probes]
    spread = (max(predicted) - min(predicted)) / statistics.mean(predicted)
    real = training_run_in_subprocess(
        [
            *overrides(knobs),
            f"train.max_atoms_per_batch={first.max_atoms_per_batch}",
            f"train.epochs={args.epochs}",
        ],
        {"data.source": str(args.root), "data.max_atoms": 600},
    )
    step = real["mean_step_seconds"]
    errors = [p / step - 1 for p in predicted]
    footprint = real["footprint_bytes"]
    cells = [
        name,
        budget,
        first.max_batch_size,
        f"{first.max_atoms_per_batch:,}",
        probes[0]["steps"],
        f"{statistics.mean(p['seconds'] for p in probes):.0f} s",
        mib(first.limit_bytes),
        mib(first.atom_peak_bytes),
        mib(footprint),
        f"{first.atom_peak_bytes / footprint - 1:+.1%}",
        f"{footprint / first.limit_bytes:.1%}",
        real["steps"],
        " / ".join(f"{p:.3f}" for p in predicted),
        f"{spread:.1%}",
        f"{step:.3f} s",
        f"{min(errors):+.1%} to {max(errors):+.1%}",
        f"{statistics.mean(p['budget_rate'] for p in probes):.1f}",
        f"{statistics.mean(p['fixed_rate'] for p in probes):.1f}",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the real training run")
    parser.add_argument("--repeats", type=int, default=5, help="probes in a row per model")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(
        "| model | budget | fixed batch | atom budget | probe steps | probe time | limit MiB | "
        "predicted footprint MiB | real run: footprint MiB (kernel) | error | real / limit | "
        "real run steps | predicted step, each probe (s) | spread | real mean step | error | "
        "complexes/s at the budget | in fixed batches |"
    )
    print("|---|---|" + "---:|" * 11 + "---|---:|---:|---|---:|---:|")
    for name, knobs, budget in CASES:
        print(run_case(name, knobs, budget, args), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
