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
from tuner._measures import synchronize
from tuner._probe import Probe
from tuner._probe_records import NOISY_SPREAD, DataFigures, ProbeResult

log = logging.getLogger(__name__)

TIMED_STEPS = 6  # real batches timed after one untimed one (each batch has its own shape)


def on_data(
    probe: Probe,
    complexes: Sequence[Data],
    result: ProbeResult,
    seed: int = 0,
    steps: int = TIMED_STEPS,
) -> DataFigures:
    """Pack ``complexes`` (shuffled under ``seed``) up to ``budget`` atoms, time ``steps``
    training steps on the fullest batches (after one untimed step; a small data set's batches
    are timed again in turn), and predict the step of an
    average batch of the epoch: the fixed part of the probe's time model plus the median of the
    measured times per atom times the batch's atoms. (An epoch's last batch holds what is left,
    often much less: a cycle's step is the epoch's average, not the full batch's.) The spread of
    the times per atom, (slowest - fastest) / median, says how far to trust it: over
    ``NOISY_SPREAD`` other work on the machine slowed some steps, and the figures say so."""
    budget, model = result.max_atoms_per_batch, result.time_model
    assert budget is not None and model is not None, "the probe found no atom budget"
    sizes = [int(c.num_nodes) for c in complexes]
    too_big = [(getattr(c, "complex_id", "?"), n) for c, n in zip(complexes, sizes, strict=True)
               if n > budget]  # fmt: skip
    if too_big:
        name, count = too_big[0]
        raise ConfigError(f"the data's complex {name} has {count} atoms, over the atom budget "
                          f"{budget}: crop complexes with a smaller data.max_atoms")  # fmt: skip
    order = torch.randperm(len(complexes), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [complexes[i] for i in order]
    packs = [p for p in DynamicBatchSampler(shuffled, max_num=budget, mode="node")]  # no len()
    atoms = [sum(sizes[order[i]] for i in pack) for pack in packs]
    # the fullest batches, one step each and again in turn until ``steps`` are timed; the first
    # step is not timed (it is the first of the data's shapes)
    fullest = sorted(range(len(packs)), key=lambda k: -atoms[k])[:steps]
    fullest = [k for k in fullest if atoms[k] >= atoms[fullest[0]] / 2]  # not an epoch's rest
    order_of_steps = [fullest[i % len(fullest)] for i in range(steps + 1)]
    micro = probe.config.optimizer.accumulate_steps
    fixed = model.seconds_fixed / micro  # of one micro-batch, as timed here
    per_atom = []
    for n, k in enumerate(order_of_steps):
        batch = Batch.from_data_list([shuffled[i] for i in packs[k]]).to(probe.torch_device)
        synchronize(probe.torch_device)
        t0 = time.perf_counter()
        probe.trainer.train_step(batch)
        probe.trainer.flush()
        synchronize(probe.torch_device)
        probe.steps += 1
        if n > 0:
            per_atom.append(max(0.0, time.perf_counter() - t0 - fixed) / atoms[k])
    # a cycle's step: the fixed part and the atoms of an average batch of the epoch
    median = statistics.median(per_atom)
    seconds = (fixed + median * statistics.mean(atoms)) * micro
    per_batch = len(complexes) / len(packs)
    spread = (max(per_atom) - min(per_atom)) / median if median > 0 else 0.0
    if spread > NOISY_SPREAD:
        log.warning(
            "the timed steps on the data differ by %.0f %% of their median: other work slowed "
            "them, so the predicted step (%.3f s) is uncertain; probe again on a quiet machine",
            100 * spread,
            seconds,
        )
    return DataFigures(
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
