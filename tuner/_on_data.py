"""The probe's answer on the user's own data: batches packed from the job's complexes up to the
atom budget, their count of complexes, and the time of real training steps on them.

Memory is judged on the worst case (the budget itself); time is not: real complexes have fewer
edges than the densest draw of ``max_atoms`` atoms, and a batch at the budget holds more of them
than the fixed count. The cycle a stage promises is the one the user's batches take.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DynamicBatchSampler

from model import ConfigError
from stagetune_api import NOISY_SPREAD, DataFigures, ProbeResult
from tuner._measures import synchronize
from tuner._probe import Probe

log = logging.getLogger(__name__)

TIMED_STEPS = 10  # batches of the data timed after one untimed one, each new to the process
PACKED_COMPLEXES = 4096  # complexes packed, over as many shuffled epochs, for the average batch
MAX_EPOCHS_PACKED = 64


def on_data(
    probe: Probe,
    complexes: Sequence[Data],
    result: ProbeResult,
    seed: int = 0,
    steps: int = TIMED_STEPS,
) -> DataFigures:
    """Pack ``complexes`` (shuffled under ``seed``) up to ``budget`` atoms, time ``steps``
    training steps on full batches as training meets them (``_fresh_full_batches``; one untimed
    step first), and predict the step of an average batch: the fixed part of the probe's time
    model plus the median of the measured times per atom times the atoms of an average batch
    over as many shuffled epochs as a run meets (``_epochs``). (An epoch's last batch holds what
    is left, often much less, and how many batches an epoch packs into changes with its order:
    a cycle's step is the epochs' average, not the full batch's.) The spread of the times per
    atom, their interquartile range over their median, says how far to trust it: over
    ``NOISY_SPREAD`` (other work on the machine slowed some steps, or the batches differ that
    much) the figures say so. Then one profiled step on the fullest of those batches: the
    footprint on the data (``peak_bytes``)."""
    budget, model = result.max_atoms_per_batch, result.time_model
    assert budget is not None and model is not None, "the probe found no atom budget"
    sizes = _sizes_within(complexes, budget)
    epochs = _epochs(complexes, budget, seed)
    packs = [pack for epoch in epochs for pack in epoch]
    atoms = [sum(sizes[i] for i in pack) for pack in packs]
    micro = probe.config.optimizer.accumulate_steps
    fixed = model.seconds_fixed / micro  # of one micro-batch, as timed here
    timed = _fresh_full_batches(complexes, sizes, budget, seed, steps + 1)
    seconds_per_batch = _train_on(probe, complexes, timed)[1:]  # the first: the data's first
    per_atom = [
        max(0.0, t - fixed) / sum(sizes[i] for i in pack)
        for t, pack in zip(seconds_per_batch, timed[1:], strict=True)
    ]
    # a cycle's step: the fixed part and the atoms of an average batch of the epochs
    median = statistics.median(per_atom)
    seconds = (fixed + median * statistics.mean(atoms)) * micro
    per_batch = len(complexes) * len(epochs) / len(packs)
    quartiles = statistics.quantiles(per_atom, n=4) if len(per_atom) > 1 else [median] * 3
    spread = (quartiles[2] - quartiles[0]) / median if median > 0 else 0.0
    if spread > NOISY_SPREAD:
        log.warning(
            "the timed steps on the data spread over %.0f %% of their median (interquartile "
            "range), so the predicted step (%.3f s) is uncertain: other work on the machine "
            "slowed some of them, or the data's batches differ that much; on a busy machine, "
            "probe again when it is quiet",
            100 * spread,
            seconds,
        )
    return DataFigures(
        peak_bytes=_footprint_on(probe, complexes, packs[atoms.index(max(atoms))]),
        complexes=len(complexes),
        atoms_mean=sum(sizes) / len(sizes),
        atoms_max=max(sizes),
        complexes_per_batch=per_batch,
        step_seconds=seconds,
        cycle_minutes=probe.cycle_batches * seconds / 60.0,
        throughput=per_batch * micro / seconds,
        timed_steps=len(per_atom),
        step_spread=spread,
    )


def _packed(complexes: Sequence[Data], budget: int, seed: int) -> list[list[int]]:
    """An epoch's batches: the complexes shuffled under ``seed``, packed up to ``budget`` atoms
    by PyG's ``DynamicBatchSampler`` (indices into ``complexes``)."""
    order = torch.randperm(len(complexes), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [complexes[i] for i in order]
    packs = [p for p in DynamicBatchSampler(shuffled, max_num=budget, mode="node")]  # no len()
    return [[order[i] for i in pack] for pack in packs]


def _epochs(complexes: Sequence[Data], budget: int, seed: int) -> list[list[list[int]]]:
    """Shuffled epochs (seeds ``seed``, ``seed + 1``, ...) packed up to ``budget``: enough to
    pack ``PACKED_COMPLEXES`` complexes, at most ``MAX_EPOCHS_PACKED``. One epoch's order can
    pack its complexes into a batch more or fewer than the next (on 16 real complexes at 2,042
    atoms, 4 batches for one order where most take 3), so one epoch's average batch can be a
    fifth off the run's; a large data set packs alike in every order, and one epoch does."""
    count = min(MAX_EPOCHS_PACKED, max(1, -(-PACKED_COMPLEXES // max(1, len(complexes)))))
    return [_packed(complexes, budget, seed + e) for e in range(count)]


def _fresh_full_batches(
    complexes: Sequence[Data], sizes: list[int], budget: int, seed: int, wanted: int
) -> list[list[int]]:
    """``wanted`` batches as training meets them: each of other complexes than the last (a new
    shuffle, epoch after epoch, as every epoch of a run packs anew), and each at least half as
    full as the first epoch's fullest (an epoch's last batch holds what is left). A training
    step on a batch of a shape the process has just seen is faster than on a new one (its
    allocations reuse the same blocks of the heap), so no batch is timed twice while new ones
    can be had: after 8 epochs' worth, they are taken again in turn."""
    first = _packed(complexes, budget, seed)
    floor = max(sum(sizes[i] for i in pack) for pack in first) / 2
    full: list[list[int]] = []
    for epoch in range(8):
        packs = first if epoch == 0 else _packed(complexes, budget, seed + epoch)
        full += [p for p in packs if sum(sizes[i] for i in p) >= floor]
        if len(full) >= wanted:
            break
    return [full[i % len(full)] for i in range(wanted)]


def _sizes_within(complexes: Sequence[Data], budget: int) -> list[int]:
    """Each complex's atoms; a ``ConfigError`` names the first that the budget cannot hold."""
    sizes = [int(c.num_nodes) for c in complexes]
    for c, n in zip(complexes, sizes, strict=True):
        if n > budget:
            raise ConfigError(
                f"the data's complex {getattr(c, 'complex_id', '?')} has {n} atoms, over the "
                f"atom budget {budget}: crop complexes with a smaller data.max_atoms"
            )
    return sizes


def _footprint_on(probe: Probe, complexes: Sequence[Data], pack: list[int]) -> int | None:
    """The footprint of a step on the batch ``pack``, predicted as the probe predicts the worst
    case's (``Probe.footprint`` of its measured live peak)."""
    batch = Batch.from_data_list([complexes[i] for i in pack])
    measured = probe.measure_batch(batch, timed_steps=0)
    return None if measured.peak_bytes is None else probe.footprint(measured.peak_bytes)


def _train_on(probe: Probe, complexes: Sequence[Data], packs: list[list[int]]) -> list[float]:
    """One timed training step (synchronised on a GPU) on each batch of ``packs``."""
    seconds = []
    for pack in packs:
        batch = Batch.from_data_list([complexes[i] for i in pack]).to(probe.torch_device)
        synchronize(probe.torch_device)
        t0 = time.perf_counter()
        probe.trainer.train_step(batch)
        probe.trainer.flush()
        synchronize(probe.torch_device)
        seconds.append(time.perf_counter() - t0)
        probe.steps += 1
    return seconds
