"""The probe's answer on the user's own data: batches packed from the job's complexes up to the
atom budget, their count of complexes, and the time of real training steps on them.

Memory is judged on the worst case (the budget itself); time is not: real complexes have fewer
edges than the densest draw of ``max_atoms`` atoms, and a batch at the budget holds more of them
than the fixed count. The cycle a stage promises is the one the user's batches take.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DynamicBatchSampler

from model import ConfigError
from tuner._measures import synchronize
from tuner._probe import Probe
from tuner._probe_records import DataFigures

TIMED_STEPS = 3  # real batches timed after one untimed one (each batch has its own shape)


def on_data(
    probe: Probe, complexes: Sequence[Data], budget: int, seed: int = 0, steps: int = TIMED_STEPS
) -> DataFigures:
    """Pack ``complexes`` (shuffled under ``seed``) up to ``budget`` atoms and time ``steps``
    training steps on the first batches, after one untimed step."""
    sizes = [int(c.num_nodes) for c in complexes]
    too_big = [(getattr(c, "complex_id", "?"), n) for c, n in zip(complexes, sizes, strict=True)
               if n > budget]  # fmt: skip
    if too_big:
        name, atoms = too_big[0]
        raise ConfigError(f"the data's complex {name} has {atoms} atoms, over the atom budget "
                          f"{budget}: crop complexes with a smaller data.max_atoms")  # fmt: skip
    order = torch.randperm(len(complexes), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [complexes[i] for i in order]
    packs = [p for p in DynamicBatchSampler(shuffled, max_num=budget, mode="node")]  # no len()
    batches = [Batch.from_data_list([shuffled[i] for i in p]) for p in packs[: steps + 1]]
    times = []
    for i, batch in enumerate(batches):
        batch = batch.to(probe.torch_device)
        synchronize(probe.torch_device)
        t0 = time.perf_counter()
        probe.trainer.train_step(batch)
        probe.trainer.flush()
        synchronize(probe.torch_device)
        probe.steps += 1
        if i > 0 or len(batches) == 1:
            times.append(time.perf_counter() - t0)
    micro = probe.config.optimizer.accumulate_steps
    seconds = statistics.median(times) * micro
    per_batch = len(complexes) / len(packs)
    return DataFigures(
        complexes=len(complexes),
        atoms_mean=sum(sizes) / len(sizes),
        atoms_max=max(sizes),
        complexes_per_batch=per_batch,
        step_seconds=seconds,
        cycle_minutes=probe.cycle_batches * seconds / 60.0,
        throughput=per_batch * micro / seconds,
        timed_steps=len(times),
    )
