"""The ``workers`` part of bench/gpu_check.py: data-parallel training of the prototyping size at
its atom budget on the GPUs the device has, as ``stagetune train --workers`` trains (each step's
batches planned alike by every rank, ``model._balance``), without Ray: one process a rank,
started here, joined by ``torch.distributed`` (NCCL on GPUs, gloo on a CPU).

For 1 worker, and for every GPU of the machine where it has two or more (on a CPU, 1 and 2
processes sharing its cores): the complexes a second of all the workers under
``DistributedDataParallel`` (rank 0's steps, synchronised, after 2 untimed), and what DDP adds to
a rank's step (``Trainer.distribute_measured``) beside the gradients' bytes. From two workers,
the fastest rank's wait for the slowest: each rank times its own step (no all-reduce, a barrier
before each) under the plan and packing rank by rank. With one GPU it says so and measures one
worker.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch_geometric.data import Batch

from model import Trainer, balanced_steps, count_parameters
from model._balance import sharded_steps

PLANS = ("balanced", "rank by rank")


def worker_counts(device: torch.device) -> tuple[list[int], str | None]:
    """The counts to measure on ``device``'s machine, and a note where one is all it has."""
    if device.type != "cuda":
        return [1, 2], "no GPU: 1 and 2 processes (gloo) sharing the CPU's cores"
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return [1], "one GPU: one worker measured (a wait for another rank needs two)"
    return [1, gpus], None


def launch(argv: list[str], world: int, job: dict[str, Any]) -> list[dict[str, Any]]:
    """``world`` processes of bench/gpu_check.py measuring ``rank_figures``, one a rank; each
    one's figures. A process still running when this is interrupted (the part's time limit) is
    killed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    script = Path(__file__).resolve().with_name("gpu_check.py")
    children = []
    for rank in range(world):
        order = json.dumps({"what": "rank", "rank": rank, "world": world, "port": port, **job})
        command = [sys.executable, str(script), *argv, "--measure", order]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        done = [child.communicate() for child in children]
    finally:
        for child in children:
            child.kill()
    figures = []
    for rank, (child, (stdout, stderr)) in enumerate(zip(children, done, strict=True)):
        if child.returncode != 0:
            tail = stderr.decode().strip().splitlines()[-1:] or [f"exit {child.returncode}"]
            raise RuntimeError(f"rank {rank} of {world} failed: {tail[0]}")
        figures.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return figures


def rank_figures(
    config: Any, complexes: list[Any], rank: int, world: int, port: int, budget: int, timed: int
) -> dict[str, Any]:
    """One rank's figures (``launch``): its own step times under each plan (from two ranks),
    what DDP adds to its step, and its steps under DDP."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = config.train.device.startswith("cuda")
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:  # the ranks share the cores, as one process would use them all
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    sizes = [int(c.num_nodes) for c in complexes]
    figures: dict[str, Any] = {}
    try:
        if world > 1:
            figures["own_seconds"] = {
                plan: _own_steps(
                    config, device, complexes, _plan(sizes, budget, world, plan), timed
                )
                for plan in PLANS
            }
        figures |= _ddp_steps(config, device, complexes, _plan(sizes, budget, world), timed)
    finally:
        dist.destroy_process_group()
    return figures


def _plan(
    sizes: list[int], budget: int, world: int, plan: str = "balanced"
) -> list[list[list[int]]]:
    """Steps of as many epochs as make 40, under ``plan``."""
    steps: list[list[list[int]]] = []
    carried: list[int] = []
    epoch = 0
    while len(steps) < 40:
        if plan == "balanced":
            planned, carried = balanced_steps(sizes, budget, world, epoch, carried)
        else:
            planned = sharded_steps(sizes, budget, world, epoch)
        steps += planned
        epoch += 1
    return steps


def _batch(complexes: list[Any], indices: list[int], device: torch.device) -> Batch:
    return Batch.from_data_list([complexes[i] for i in indices]).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _own_steps(
    config: Any, device: torch.device, complexes: list[Any], steps: list[Any], timed: int
) -> list[float]:
    """This rank's own step times (no all-reduce; the ranks start each step together)."""
    trainer = Trainer(config, device, len(steps))
    return _timed(trainer, complexes, steps[: timed + 2], device, together=True)[0]


def _ddp_steps(
    config: Any, device: torch.device, complexes: list[Any], steps: list[Any], timed: int
) -> dict[str, Any]:
    """What DDP adds to this rank's step (from two ranks), and the steps of all the ranks
    under it: each one's seconds (rank 0's clock) and complexes (every rank's)."""
    trainer = Trainer(config, device, len(steps))
    added = None
    if dist.get_world_size() > 1:
        first = _batch(complexes, steps[0][dist.get_rank()], device)
        added = trainer.distribute_measured(first)
    seconds, counts = _timed(trainer, complexes, steps[: timed + 2], device, together=False)
    grads = count_parameters(trainer.model) * 4
    return {"ddp_bytes": added, "grad_bytes": grads, "seconds": seconds, "complexes": counts}


def _timed(
    trainer: Trainer, complexes: list[Any], steps: list[Any], device: torch.device, together: bool
) -> tuple[list[float], list[int]]:
    """This rank's batch of each of ``steps`` trained, the steps after the first two timed
    (synchronised on a GPU); ``together``: a barrier before each, so that the ranks start it
    together. The timed steps' seconds and complexes (every rank's)."""
    rank = dist.get_rank()
    seconds, counts = [], []
    for i, step in enumerate(steps):
        batch = _batch(complexes, step[rank], device)
        if together:
            dist.barrier()
        _sync(device)
        t0 = time.perf_counter()
        trainer.train_step(batch)
        _sync(device)
        if i >= 2:
            seconds.append(time.perf_counter() - t0)
            counts.append(sum(len(b) for b in step))
    return seconds, counts


def summary(world: int, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of ``world`` workers from each rank's (``rank_figures``)."""
    first = ranks[0]
    out: dict[str, Any] = {
        "workers": world,
        "step_seconds": statistics.median(first["seconds"]),
        "complexes_per_second": sum(first["complexes"]) / sum(first["seconds"]),
        "timed_steps": len(first["seconds"]),
        "grad_bytes": first["grad_bytes"],
        "ddp_bytes": first["ddp_bytes"],
    }
    if world > 1:
        waits = {}
        for plan in PLANS:
            per_step = list(zip(*(r["own_seconds"][plan] for r in ranks), strict=True))
            slowest = statistics.mean(max(s) for s in per_step)
            wait = statistics.mean(max(s) - min(s) for s in per_step)
            waits[plan] = {
                "slowest_seconds": slowest,
                "wait_seconds": wait,
                "share": wait / slowest,
            }
        out["waits"] = waits
    return out
