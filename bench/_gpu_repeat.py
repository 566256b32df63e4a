"""The ``repeat`` part of bench/gpu_check.py: the probe's step on the data, five times in a row,
against the mean step of a real run of a whole cycle on the same data at the same budget.

The goal (five probes within 5 % of each other, each within 10 % of the run's mean step) cannot
be judged on the 2-core CPU this project is built on, whose speed moves 25 to 110 % within one
run (BENCHMARKS.md, "Atom budgets on real complexes"); a GPU's clock holds still. The data are
synthetic complexes of mixed sizes (half the probe's atoms to all of them; the GPU machine has
no reader for real ones), about eight batches an epoch at the prototyping size's atom budget.
Each probe is a fresh ``Probe`` (``find_max_batch``, then ``tuner.on_data``, as a fit trial
runs it); the run trains ``cycle_batches`` steps of shuffled epochs packed to the budget
(``model.Batching``, as ``stagetune train`` packs them) after one untimed epoch, each step
timed (synchronised on a GPU), with the mean of each ninth of the run beside the mean, to show
how much the device itself moved.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from model import Batching, TrainConfig, Trainer
from tuner import on_data

REPEATS = 5


def part_repeat(setup: Any, out: dict[str, Any], complexes_of: Callable[[list[int]], list]) -> None:
    """Five probes and a run (module docstring); ``complexes_of``: gpu_check's
    ``mixed_complexes``."""
    config = setup.config("prototyping")
    budget = setup.result("prototyping").max_atoms_per_batch
    if budget is None:
        out["skipped"] = "the probe found no atom budget (the prototyping size does not fit)"
        return
    draw = random.Random(3)
    count = 8 * budget // (3 * setup.atoms // 4) + 8
    complexes = complexes_of([draw.randint(setup.atoms // 2, setup.atoms) for _ in range(count)])
    predicted: list[float] = []
    out.update(model=setup.model_name("prototyping"), complexes=count, predicted=predicted)
    for _ in range(REPEATS):
        with setup.probe(config) as probe:
            result = probe.find_max_batch(4096)
            figures = on_data(probe, complexes, result, seed=0)
        predicted.append(figures.step_seconds)  # kept as they come: a part stopped keeps them
        out["max_atoms_per_batch"] = result.max_atoms_per_batch
    out["spread"] = (max(predicted) - min(predicted)) / statistics.mean(predicted)
    assert result.max_atoms_per_batch is not None
    seconds = _run(config, setup.torch_device, complexes, result.max_atoms_per_batch, setup)
    mean = statistics.mean(seconds)
    ninth = max(1, len(seconds) // 9)
    blocks = [statistics.mean(seconds[i : i + ninth]) for i in range(0, len(seconds), ninth)]
    out.update(
        run_steps=len(seconds),
        run_mean_step_seconds=mean,
        run_blocks_seconds=[min(blocks), max(blocks)],
        errors=[p / mean - 1 for p in predicted],
    )


def _run(
    config: TrainConfig, device: torch.device, complexes: list, budget: int, setup: Any
) -> list[float]:
    """Each step's seconds of ``setup.cycle_batches`` steps at ``budget`` atoms a batch, after
    one untimed epoch."""
    train = config.train.model_copy(update={"max_atoms_per_batch": budget})
    batching = Batching(train)
    trainer = Trainer(config, device, batching.steps_per_epoch(complexes))
    for batch in batching.train_loader(complexes):  # the untimed epoch
        trainer.train_step(batch)
    seconds: list[float] = []
    while len(seconds) < setup.cycle_batches:
        for batch in batching.train_loader(complexes):
            if len(seconds) == setup.cycle_batches:
                break
            _sync(device)  # the step moves the batch to the device, as a run's does
            t0 = time.perf_counter()
            trainer.train_step(batch)
            _sync(device)
            seconds.append(time.perf_counter() - t0)
    return seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
