"""Atom budgets on real complexes: the probe's budget and step against real training runs.

    python bench/atoms.py [--root ../shared/data/pdbbind-mini] [--cycle 450] [--repeats 5]

For each model size, on this machine's CPU with a declared budget, on 600-atom worst-case
complexes:

- the probe, ``--repeats`` times in a row, each in a fresh process as each fit trial is: its
  fixed batch, its atom budget, its steps, its prediction of the step on ROOT's batches packed
  to the budget (``stagetune probe --data``) and of the footprint there; the spread of the step
  predictions (goal: within 5 % of each other);
- a real training run at the budget in a fresh process (``model.run_training``, as
  ``stagetune train --data ROOT train.max_atoms_per_batch=BUDGET`` runs it) for a whole cycle
  (``--cycle`` steps, 450: the epochs that hold them): its footprint by the kernel's count (the
  peak resident set over the resident set just before the run, after freed heap pages are given
  back; it counts the model, the optimizer, the data loader and evaluation), against the
  footprint the probe predicts on the data and the worst case's, which the limit applies to
  (goal: under the limit, within 10 % of the prediction); its mean step by wall clock over the
  epochs after the first, against each prediction (goal: within 10 %), and the mean step of
  each 50 steps in turn, lowest and highest: how far the machine's own speed drifted during
  the run;
- complexes per second at the budget against fixed batches of the probe's batch size (both
  timed here on the same batches of real complexes).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from _measure import in_subprocess, mib, training_run_in_subprocess
from torch_geometric.data import Batch

from model import load_dataset, load_train_config
from tuner import Probe, ProbeResult, ProbeSample, device_for, discover, on_data

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


def probe_once(knobs: tuple[int, int, int, int], budget: str, root: Path) -> dict:
    """One probe in this process, as a fit trial probes: its figures as JSON."""
    complexes = list(load_dataset(data_config(knobs, root)).train)  # what the run trains on
    config = load_train_config(overrides(knobs))
    sample = ProbeSample.synthetic(600, config.model.cutoff, config.model.max_num_neighbors)
    with Probe(config, device_for(discover(budget), "cpu"), sample) as probe:
        t0 = time.perf_counter()
        result = probe.find_max_batch()
        assert result.max_atoms_per_batch is not None
        figures = on_data(probe, complexes, result)
        return {
            "result": result.to_json(),
            "figures": figures.to_json(),
            "seconds": time.perf_counter() - t0,
            "steps": probe.steps,
            "fixed_rate": fixed_rate(probe, complexes, result.max_batch_size),
            "budget_rate": budget_rate(probe, complexes, result.max_atoms_per_batch),
        }


def probe_in_subprocess(knobs: tuple[int, int, int, int], budget: str, root: Path) -> dict:
    out = in_subprocess(__file__, "probe", json.dumps([knobs, budget, str(root)]))
    if "error" in out:
        raise RuntimeError(f"the probe of {knobs} failed: {out['error']}")
    return out


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


def epochs_for(cycle: int, knobs: tuple[int, int, int, int], root: Path, budget: int) -> int:
    """The epochs that hold ``cycle`` training steps at the atom budget."""
    from torch_geometric.loader import DynamicBatchSampler

    complexes = list(load_dataset(data_config(knobs, root)).train)
    steps = len([p for p in DynamicBatchSampler(complexes, max_num=budget, mode="node")])
    return math.ceil(cycle / steps)


def run_case(name: str, knobs: tuple[int, int, int, int], budget: str, args) -> str:
    probes = [probe_in_subprocess(knobs, budget, args.root) for _ in range(args.repeats)]
    first = ProbeResult.from_json(probes[0]["result"])
    assert first.max_atoms_per_batch is not None and first.atom_peak_bytes is not None
    predicted = [p["figures"]["step_seconds"] for p in probes]
    on_data = [p["figures"]["peak_bytes"] for p in probes]
    spread = (max(predicted) - min(predicted)) / statistics.mean(predicted)
    real = training_run_in_subprocess(
        [
            *overrides(knobs),
            f"train.max_atoms_per_batch={first.max_atoms_per_batch}",
            f"train.epochs={epochs_for(args.cycle, knobs, args.root, first.max_atoms_per_batch)}",
        ],
        {"data.source": str(args.root), "data.max_atoms": 600},
    )
    step, blocks = real["mean_step_seconds"], real["block_mean_steps"]
    errors = [p / step - 1 for p in predicted]
    footprint = real["footprint_bytes"]
    memory = [b / footprint - 1 for b in on_data]
    cells = [
        name,
        budget,
        first.max_batch_size,
        f"{first.max_atoms_per_batch:,}",
        probes[0]["steps"],
        f"{statistics.mean(p['seconds'] for p in probes):.0f} s",
        mib(first.limit_bytes),
        mib(first.atom_peak_bytes),
        f"{mib(min(on_data))} to {mib(max(on_data))}",
        mib(footprint),
        f"{min(memory):+.1%} to {max(memory):+.1%}",
        f"{first.atom_peak_bytes / footprint - 1:+.1%}",
        f"{footprint / first.limit_bytes:.1%}",
        real["steps"],
        " / ".join(f"{p:.3f}" for p in predicted),
        f"{spread:.1%}",
        f"{step:.3f} s",
        f"{min(blocks):.3f} to {max(blocks):.3f} s",
        f"{min(errors):+.1%} to {max(errors):+.1%}",
        f"{statistics.mean(p['budget_rate'] for p in probes):.1f}",
        f"{statistics.mean(p['fixed_rate'] for p in probes):.1f}",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--cycle", type=int, default=450, help="steps of the real training run")
    parser.add_argument("--repeats", type=int, default=5, help="probes in a row per model")
    args = parser.parse_args()
    print(
        "| model | budget | fixed batch | atom budget | probe steps | probe time | limit MiB | "
        "predicted footprint, worst case MiB | predicted on the data MiB | real run: footprint "
        "MiB (kernel) | error on the data | error, worst case | real / limit | real run steps | "
        "predicted step, each probe (s) | spread | real mean step | the run's 50-step blocks | "
        "error | "
        "complexes/s at the budget | in fixed batches |"
    )
    left = {0, 1, 14}  # the model, its budget and each probe's step: text
    print("|" + "|".join("---" if i in left else "---:" for i in range(21)) + "|")
    for name, knobs, budget in CASES:
        print(run_case(name, knobs, budget, args), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        knobs, budget, root = json.loads(sys.argv[2])
        torch.set_num_threads(2)
        print(json.dumps(probe_once(tuple(knobs), budget, Path(root))))
    else:
        main()
