"""The probe against power-of-two-then-bisect and brute force, and its predictions against real
training processes measured by the kernel.

Every complex is the same real one (the largest of ``../shared/data/pdbbind-mini``, cropped to
``--max-atoms``), so every batch is the probe's worst case: the probe's sample is that complex,
and the real runs train on a PDBbind root of copies of it.

Steps to the largest batch, under one rule for all three (each trial is one training step whose
live peak is measured, judged against the same limit by the same ``Probe.measure``; the answer
then gets 2 timed steps, which give the step time):

- ours: ``Probe.find_max_batch`` (its steps as it counts them, the atom budget's verifying step
  included);
- bisect: batch 1, 2, 4, ... until a trial fails, then bisection between the last success and
  the first failure, then 2 timed steps at its answer;
- brute force: every batch from 1 up until one fails: the true largest batch.

Then the answer against a real run: ``model.run_training`` (what ``stagetune train`` runs) in a
fresh process at the probe's batch on the copies, measured by the kernel, an instrument the
probe does not use (``bench/_measure.training_run``): its footprint (peak resident set over the
resident set just before the run) against the probe's predicted footprint and limit, and its
mean step (wall clock, the epochs after the first) against the probe's step. The run lasts a
whole cycle, the ``--cycle`` steps (450) the stages' budgets are for, so its footprint holds what
the heap grows to over one, as the prediction does.

    python bench/probe.py [--max-atoms 600] [--copies 60] [--cycle 450]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import torch
from _measure import mib, training_run_in_subprocess

from model import load_train_config
from tuner import Probe, ProbeSample, device_for, discover

REPO = Path(__file__).resolve().parents[1]
MINI = REPO.parent / "shared" / "data" / "pdbbind-mini"
CASES = [  # name, model overrides, CPU budget
    ("16 ch x 2 layers", "16 2 2 8", "768MiB"),
    ("32 ch x 3 layers", "32 3 4 16", "1536MiB"),
    ("64 ch x 3 layers", "64 3 4 16", "3GiB"),
]
TIMED = 2  # timed steps at the answer, for every contender


def model_overrides(knobs: str) -> list[str]:
    channels, layers, heads, rbf = knobs.split()
    return [
        f"model.hidden_channels={channels}",
        f"model.num_layers={layers}",
        f"model.num_heads={heads}",
        f"model.num_rbf={rbf}",
    ]


def largest_complex() -> str:
    rows = (MINI / "atoms.csv").read_text().splitlines()[1:]
    sizes = {}
    for row in rows:
        cells = row.split(",")
        sizes[cells[0]] = int(cells[1]) + int(cells[10])  # pocket + ligand heavy atoms
    return max(sizes, key=sizes.__getitem__)


def copies_root(source: str, copies: int, into: Path) -> Path:
    """A PDBbind root of ``copies`` copies of complex ``source``, each with the same label."""
    root = into / "copies"
    lines = []
    for i in range(copies):
        name = f"c{i:03d}"
        (root / name).mkdir(parents=True)
        for file in (MINI / source).iterdir():
            shutil.copy(file, root / name / file.name.replace(source, name))
        lines.append(f"{name}  2.00  2020   6.00  Kd=1uM  // copy of {source}")
    (root / "INDEX_general_PL_data.2020").write_text("\n".join(lines) + "\n")
    return root


def new_probe(knobs: str, budget: str, sample: ProbeSample, max_atoms: int) -> Probe:
    config = load_train_config(
        [*model_overrides(knobs), f"data.max_atoms={max_atoms}", "optimizer.log_config=false"]
    )
    return Probe(config, device_for(discover(budget), "cpu"), sample)


def bisect(probe: Probe, max_batch: int = 4096) -> tuple[int, int]:
    """Its answer and its steps: one a trial, then ``TIMED`` timed steps at the answer."""
    good, bad, b = 0, None, 1
    while bad is None and b <= max_batch:
        if probe.measure(b, timed_steps=0).fits:
            good, b = b, b * 2
        else:
            bad = b
    bad = bad or max_batch + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        if probe.measure(mid, timed_steps=0).fits:
            good = mid
        else:
            bad = mid
    if good == 0:
        return 0, probe.steps
    steps = probe.steps + TIMED  # the answer's own trial measured its peak already
    probe.measure(good, timed_steps=TIMED)
    return good, steps


def brute(probe: Probe) -> int:
    b = 1
    while probe.measure(b, timed_steps=0).fits:
        b += 1
    return b - 1


def epochs_for(cycle: int, copies: int, batch: int) -> int:
    """Epochs of at least ``cycle`` steps in all, on ``copies`` complexes less the validation
    fifth (``data.val_fraction``, 0.2, as ``model._dataset`` splits them)."""
    train = copies - min(copies - 1, max(1, round(0.2 * copies)))
    return math.ceil(cycle / math.ceil(train / batch))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-atoms", type=int, default=600)
    parser.add_argument("--copies", type=int, default=60)
    parser.add_argument("--cycle", type=int, default=450, help="training steps of a real run")
    args = parser.parse_args()
    torch.manual_seed(0)
    source = largest_complex()
    with tempfile.TemporaryDirectory() as tmp:
        root = copies_root(source, args.copies, Path(tmp))
        sample = ProbeSample.from_folder(root / "c000", args.max_atoms)
        print(f"every complex: {source}, {sample.atoms} atoms\n")
        rows = [run_case(case, sample, root, args, Path(tmp)) for case in CASES]
    print_tables(rows)


def run_case(
    case: tuple[str, str, str],
    sample: ProbeSample,
    root: Path,
    args: argparse.Namespace,
    tmp: Path,
) -> dict:
    name, knobs, budget = case
    with new_probe(knobs, budget, sample, args.max_atoms) as p:
        truth = brute(p)
        brute_steps = p.steps
    with new_probe(knobs, budget, sample, args.max_atoms) as p:
        b_bisect, bisect_steps = bisect(p)
    with new_probe(knobs, budget, sample, args.max_atoms) as p:
        result = p.find_max_batch()
    run = training_run_in_subprocess(
        [
            *model_overrides(knobs),
            f"train.batch_size={result.max_batch_size}",
            f"train.epochs={epochs_for(args.cycle, args.copies, result.max_batch_size)}",
            f"data.cache_dir={tmp / 'cache'}",
            "optimizer.log_config=false",
        ],
        {"data.source": str(root), "data.max_atoms": args.max_atoms},
    )
    return {
        "name": name,
        "budget": budget,
        "truth": truth,
        "result": result,
        "bisect": (b_bisect, bisect_steps),
        "brute_steps": brute_steps,
        "run": run,
    }


def print_tables(rows: list[dict]) -> None:
    print(
        "| model | budget | true largest | ours: batch | ours: steps | bisect: batch "
        "| bisect: steps | brute force: steps | ours / bisect |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        res, (b_bisect, bisect_steps) = r["result"], r["bisect"]
        print(
            f"| {r['name']} | {r['budget']} | {r['truth']} | {res.max_batch_size} | "
            f"{res.probe_steps} | {b_bisect} | {bisect_steps} | {r['brute_steps']} | "
            f"{res.probe_steps / bisect_steps:.2f} |"
        )
    print(
        "\n| model | batch | limit MiB | live peak MiB (profiler) | predicted footprint MiB "
        "| real run: footprint MiB (kernel) | error | real / limit | real run steps "
        "| predicted step | real mean step | error |"
    )
    print("|---|" + "---:|" * 11)
    for r in rows:
        res, run = r["result"], r["run"]
        footprint = run["footprint_bytes"]
        step = run["step_seconds"]
        print(
            f"| {r['name']} | {res.max_batch_size} | {mib(res.limit_bytes)} | "
            f"{mib(res.live_peak_bytes)} | {mib(res.peak_bytes)} | {mib(footprint)} | "
            f"{res.peak_bytes / footprint - 1:+.1%} | {footprint / res.limit_bytes:.1%} | "
            f"{run['steps']} | {res.step_seconds:.3f} s | {step:.3f} s | "
            f"{res.step_seconds / step - 1:+.1%} |"
        )


if __name__ == "__main__":
    main()
