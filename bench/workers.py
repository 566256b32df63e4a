"""Data-parallel training on the real complexes: how even a step's batches are across the ranks,
and what a second worker gives on this CPU.

    python bench/workers.py [--root ../shared/data/pdbbind-mini] [--epochs 6] [--repeats 3]

- Balance: the 20 complexes of ROOT (cropped to 600 atoms) planned for 50 epochs, for 2 and 4
  ranks at per-rank budgets of 1,200 and 2,048 atoms: each step's atom imbalance ((most - fewest)
  / mean atoms of its ranks' batches) under ``model._balance.balanced_steps`` against packing
  rank by rank (each rank's ``DistributedSampler`` shard packed by PyG's ``DynamicBatchSampler``),
  mean and largest over the steps, and the steps an epoch has.
- Waiting: two processes (gloo, one thread each, in lockstep: a barrier before every step), each
  training its batch of each step of 20 epochs at 2,048 atoms a rank (32 channels x 2 layers),
  timing its own step: the fastest rank's wait for the slowest, (slowest - fastest) each step,
  under the plan and under packing rank by rank, with the mean step; after one untimed epoch.
- Memory: what ``DistributedDataParallel`` adds to a rank, as the distributed probe measures it
  (``Trainer.distribute_measured``: the probe's instrument, the profiler's allocation events and
  the heap's growth as DDP is built), against the kernel's: two processes (gloo) each train 12
  steps of their batches of the plan at 600 atoms a rank (256 channels x 6 layers), once under
  DDP and once without, the same batches; each rank's peak resident set (``ru_maxrss``) with
  DDP minus without, beside the probe's figure (and 1.5 times it, the heap overhead the probe's
  footprint applies) and the bytes of the gradients (one bucket copy of them is what DDP's
  documentation leads one to expect); ``--repeats`` pairs of runs.
- Scaling: ``stagetune train`` on ROOT for ``--epochs`` epochs at 2,048 atoms a rank, with one
  process and with ``--workers 2`` (Ray Train, gloo), each ``--repeats`` times in a fresh
  process: complexes trained a second over the epochs (training and evaluation; not Ray's
  start), median and range.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch_geometric.data import Batch

from model import TrainConfig, Trainer, count_parameters, load_dataset, load_train_config
from model._balance import atom_imbalance, balanced_steps, sharded_steps

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "pdbbind-mini"
MODEL = ["model.hidden_channels=32", "model.num_layers=2", "model.num_heads=4", "model.num_rbf=16"]


def sizes_of(root: Path) -> list[int]:
    config = load_train_config([], settings={"data.source": str(root), "data.max_atoms": 600})
    data = load_dataset(config)
    return [int(c.num_nodes) for c in [*data.train, *data.val]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plans(count: int, sizes: list[int], plan: str) -> list[list[list[int]]]:
    """Both ranks' steps over ``count`` epochs at 2,048 atoms a rank, under ``plan``."""
    steps: list[list[list[int]]] = []
    carried: list[int] = []
    for epoch in range(count):
        if plan == "balanced":
            planned, carried = balanced_steps(sizes, 2048, 2, epoch, carried)
        else:
            planned = sharded_steps(sizes, 2048, 2, epoch)
        steps += planned
    return steps


def _join(rank: int, root: str, port: int, model: list[str]) -> tuple[TrainConfig, list]:
    """This process as ``rank`` of two (gloo, one thread), and ``model``'s configuration with
    ROOT's complexes (cropped to 600 atoms)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    config = load_train_config(model, settings={"data.source": root, "data.max_atoms": 600})
    data = load_dataset(config)
    return config, [*data.train, *data.val]


def _rank(rank: int, root: str, port: int, plan: str, out: str) -> None:
    config, complexes = _join(rank, root, port, MODEL)
    steps = plans(21, [int(c.num_nodes) for c in complexes], plan)
    trainer = Trainer(config, torch.device("cpu"), len(steps))
    seconds = []
    for step in steps:
        batch = Batch.from_data_list([complexes[i] for i in step[rank]])
        dist.barrier()  # the ranks start each step together, as all-reduce makes them
        t0 = time.perf_counter()
        trainer.train_step(batch)  # no all-reduce: this rank's own work
        seconds.append(time.perf_counter() - t0)
    gathered: list = [None, None]
    dist.all_gather_object(gathered, seconds)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def waiting(root: Path) -> None:
    print(
        "| plan | steps | mean step of the slowest rank | fastest rank's wait: mean | "
        "share of the step |"
    )
    print("|---|---:|---:|---:|---:|")
    sizes = sizes_of(root)
    first = len(plans(1, sizes, "balanced"))
    for plan in ("balanced", "rank by rank"):
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "seconds.json")
            mp.spawn(_rank, args=(str(root), free_port(), plan, out), nprocs=2)
            times = json.loads(Path(out).read_text())
        skip = first if plan == "balanced" else len(plans(1, sizes, plan))
        pairs = list(zip(*times, strict=True))[skip:]  # after the first, untimed epoch
        slowest = statistics.mean(max(p) for p in pairs)
        wait = statistics.mean(max(p) - min(p) for p in pairs)
        print(
            f"| {plan} | {len(pairs)} | {slowest:.3f} s | {wait:.3f} s | {wait / slowest:.1%} |",
            flush=True,
        )


BIG = ["model.hidden_channels=256", "model.num_layers=6", "model.num_heads=8"]


def _memory_rank(rank: int, root: str, port: int, ddp: bool, out: str) -> None:
    config, complexes = _join(rank, root, port, BIG)
    steps, _ = balanced_steps([int(c.num_nodes) for c in complexes], 600, 2, 0)
    batches = [Batch.from_data_list([complexes[i] for i in step[rank]]) for step in steps]
    trainer = Trainer(config, torch.device("cpu"), len(steps))
    if ddp:  # the distributed probe's measurement, which leaves the trainer distributed
        added = trainer.distribute_measured(batches[0])
    else:  # the same steps without DDP: one untimed, three measured
        trainer.train_step(batches[0])
        trainer.flush()
        added = 0
        for _ in range(3):
            trainer.step_peak(batches[0])
    for i in range(12):
        trainer.train_step(batches[i % len(batches)])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gathered: list = [None, None]
    dist.all_gather_object(gathered, {"added": added, "peak": peak})
    if rank == 0:
        grads = count_parameters(trainer.model) * 4
        Path(out).write_text(json.dumps({"ranks": gathered, "grads": grads}))
    dist.destroy_process_group()


def memory(root: Path, repeats: int) -> None:
    print(
        "| run | gradients | probe: DDP adds | x 1.5 (its footprint) | kernel: peak RSS without "
        "DDP, ranks 0 and 1 | with DDP | with minus without |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    mib = 2**20
    for run in range(1, repeats + 1):
        figures = {}
        for ddp in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                out = str(Path(tmp) / "memory.json")
                mp.spawn(_memory_rank, args=(str(root), free_port(), ddp, out), nprocs=2)
                figures[ddp] = json.loads(Path(out).read_text())
        added = max(r["added"] for r in figures[True]["ranks"])
        peaks = {ddp: [r["peak"] / mib for r in figures[ddp]["ranks"]] for ddp in (False, True)}
        kernel = [on - off for on, off in zip(peaks[True], peaks[False], strict=True)]
        cells = [
            str(run),
            f"{figures[True]['grads'] / mib:.1f} MiB",
            f"{added / mib:.1f} MiB",
            f"{1.5 * added / mib:.1f} MiB",
            *(
                " and ".join(f"{v:,.0f}" for v in values) + " MiB"
                for values in (*peaks.values(), kernel)
            ),
        ]
        print("| " + " | ".join(cells) + " |", flush=True)


def balance(sizes: list[int]) -> None:
    print(
        "| ranks | atoms a rank | balanced: mean | largest | steps an epoch | rank by rank: mean "
        "| largest | steps an epoch |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for ranks in (2, 4):
        for budget in (1200, 2048):
            planned, carried = [], []
            for epoch in range(50):
                steps, carried = balanced_steps(sizes, budget, ranks, epoch, carried)
                planned.append(steps)
            sharded = [sharded_steps(sizes, budget, ranks, epoch) for epoch in range(50)]
            cells = [ranks, f"{budget:,}"]
            for epochs in (planned, sharded):
                spread = [atom_imbalance(step, sizes) for steps in epochs for step in steps]
                cells += [
                    f"{statistics.mean(spread):.1%}",
                    f"{max(spread):.1%}",
                    f"{sum(len(s) for s in epochs) / len(epochs):.2f}",
                ]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def rate(root: Path, workers: int, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [
            str(Path(sys.executable).with_name("stagetune")),
            "train",
            *("--data", str(root), "--epochs", str(epochs), "--device", "cpu"),
            *("--output", out, "--json", "--workers", str(workers)),
            *MODEL,
            "data.max_atoms=600",
            "train.max_atoms_per_batch=2048",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        report = json.loads(done.stdout)
    seconds = sum(e["seconds"] for e in report["epochs"])
    return report["train_complexes"] * len(report["epochs"]) / seconds


def scaling(root: Path, epochs: int, repeats: int) -> None:
    print("| workers | complexes/s: median | range | runs |")
    print("|---:|---:|---|---:|")
    for workers in (1, 2):
        rates = [rate(root, workers, epochs) for _ in range(repeats)]
        print(
            f"| {workers} | {statistics.median(rates):.1f} | {min(rates):.1f} to "
            f"{max(rates):.1f} | {repeats} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["balance", "waiting", "memory", "scaling"])
    args = parser.parse_args()
    if args.only:
        if args.only == "balance":
            balance(sizes_of(args.root))
        elif args.only == "waiting":
            waiting(args.root)
        elif args.only == "memory":
            memory(args.root, args.repeats)
        else:
            scaling(args.root, args.epochs, args.repeats)
        return
    balance(sizes_of(args.root))
    print()
    waiting(args.root)
    print()
    memory(args.root, args.repeats)
    print()
    scaling(args.root, args.epochs, args.repeats)


if __name__ == "__main__":
    main()
