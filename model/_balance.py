"""An epoch's batches for data-parallel training: every rank's batch of every step, planned by
every rank alike from the same seed (no communication), each within the per-rank atom budget,
the ranks of a step holding near-equal atoms.

Under data parallelism every step waits for its slowest rank, and a rank's step takes time in
proportion to its atoms: batches packed rank by rank (each rank its own shard, packed up to the
budget as ``DynamicBatchSampler`` does) hold different atoms, and the other ranks wait for the
fullest. Here a step's complexes are chosen first (the epoch's shuffled order, taken up to the
ranks' joint budget: ``ranks x budget`` atoms), then dealt to the ranks largest first, each to the
rank with the fewest atoms so far that can hold it (LPT), and pairs of complexes swapped between
the fullest and the emptiest rank while that narrows them. A complex no rank can hold waits for
the next step.

Every rank runs the same number of steps (a rank with a step more than the others would wait for
a gradient all-reduce that never comes). An epoch's last step holds what is left: complexes are
taken off its fullest rank while that evens it, and when it still cannot give every rank a
complex, or its ranks' atoms differ by more than ``TAIL_IMBALANCE``, it is not run. What is taken
off comes first in the next epoch's order (so none is left out twice running, as ``drop_last``
would leave the same ones out); the last epoch of a run leaves it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class Ranks(NamedTuple):
    """This process's place among the data-parallel processes of a run."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Ranks:
        """From ``torch.distributed`` when its process group is up (Ray Train sets it up for
        each worker), else a run of its own."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls(torch.distributed.get_rank(), torch.distributed.get_world_size())
        return cls()


#: a step's plan: for each rank, the indices (into the data) of the complexes it trains on
Step = list[list[int]]
#: an epoch's last step, which holds what is left, is carried into the next epoch when its
#: ranks' atoms differ by more than this share of their mean
TAIL_IMBALANCE = 0.05


def balanced_steps(
    sizes: Sequence[int], budget: int, ranks: int, seed: int, carried: Sequence[int] = ()
) -> tuple[list[Step], list[int]]:
    """An epoch's steps over complexes of ``sizes`` atoms, ``ranks`` batches each, and the
    complexes of a last step that could not give every rank one (to ``carried`` into the next
    epoch, first). The order is ``carried`` then the rest shuffled under ``seed``; the same
    arguments give the same plan on every rank."""
    if ranks < 1:
        raise ValueError(f"ranks={ranks}: at least 1")
    too_big = [i for i, n in enumerate(sizes) if n > budget]
    if too_big:
        raise ValueError(
            f"complex {too_big[0]} has {sizes[too_big[0]]} atoms, over the per-rank atom "
            f"budget {budget}"
        )
    order = _order(len(sizes), seed, carried)
    steps: list[Step] = []
    waiting: list[int] = []  # complexes no rank could hold in the step they were dealt to
    position = 0
    while position < len(order) or waiting:
        chosen, position = _take(order, position, waiting, sizes, ranks * budget)
        step, waiting = _deal(chosen, sizes, budget, ranks)
        last = position == len(order) and not waiting  # the epoch's last step: what is left
        if last:
            waiting = _trimmed(step, sizes)
        if any(not batch for batch in step) or (
            last and atom_imbalance(step, sizes) > TAIL_IMBALANCE
        ):  # too few complexes left to give every rank one, or as many atoms
            return steps, [i for batch in step for i in batch] + waiting
        steps.append(step)
        if last:
            return steps, waiting  # what was trimmed off it
    return steps, []


def atom_imbalance(step: Step, sizes: Sequence[int]) -> float:
    """(most - fewest) / mean atoms of a step's batches: 0 when every rank holds as many."""
    atoms = [sum(sizes[i] for i in batch) for batch in step]
    mean = sum(atoms) / len(atoms)
    return (max(atoms) - min(atoms)) / mean if mean else 0.0


def _trimmed(step: Step, sizes: Sequence[int]) -> list[int]:
    """The complexes taken off an epoch's last step so that its ranks hold near-equal atoms:
    from the fullest rank, the one whose leaving evens the step most, while that narrows it."""
    taken: list[int] = []
    while atom_imbalance(step, sizes) > TAIL_IMBALANCE:
        atoms = [sum(sizes[i] for i in batch) for batch in step]
        full = step[atoms.index(max(atoms))]
        if len(full) == 1:
            break
        now = atom_imbalance(step, sizes)
        best = min(full, key=lambda i: _without(step, i, sizes))
        if _without(step, best, sizes) >= now:
            break
        full.remove(best)
        taken.append(best)
    return taken


def _without(step: Step, complex_: int, sizes: Sequence[int]) -> float:
    return atom_imbalance([[i for i in batch if i != complex_] for batch in step], sizes)


def _order(count: int, seed: int, carried: Sequence[int]) -> list[int]:
    shuffled = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    first = list(dict.fromkeys(carried))
    held = set(first)
    return first + [i for i in shuffled if i not in held]


def _take(
    order: list[int], position: int, waiting: list[int], sizes: Sequence[int], room: int
) -> tuple[list[int], int]:
    """The next step's complexes: those waiting, then the order's next until the joint budget
    ``room`` is full; and where the order goes on from."""
    chosen = list(waiting)
    atoms = sum(sizes[i] for i in chosen)
    while position < len(order) and atoms + sizes[order[position]] <= room:
        chosen.append(order[position])
        atoms += sizes[order[position]]
        position += 1
    return chosen, position


def _deal(
    chosen: list[int], sizes: Sequence[int], budget: int, ranks: int
) -> tuple[Step, list[int]]:
    """``chosen`` dealt to ``ranks`` batches of at most ``budget`` atoms, largest first, each to
    the emptiest batch that holds it, then evened by swaps; and what no batch could hold."""
    step: Step = [[] for _ in range(ranks)]
    atoms = [0] * ranks
    left: list[int] = []
    for i in sorted(chosen, key=lambda i: (-sizes[i], i)):
        fits = [r for r in range(ranks) if atoms[r] + sizes[i] <= budget]
        if not fits:
            left.append(i)
            continue
        r = min(fits, key=lambda r: (atoms[r], r))
        step[r].append(i)
        atoms[r] += sizes[i]
    _even(step, atoms, sizes, budget)
    return step, left


def _even(step: Step, atoms: list[int], sizes: Sequence[int], budget: int) -> None:
    """Swap complexes (or move one) between the fullest and the emptiest batch while that
    narrows the gap between them, within the budget."""
    for _ in range(4 * sum(len(batch) for batch in step)):
        full = max(range(len(step)), key=lambda r: atoms[r])
        empty = min(range(len(step)), key=lambda r: atoms[r])
        gap = atoms[full] - atoms[empty]
        best: tuple[int, int | None, int | None] = (gap, None, None)
        for a in step[full]:
            for b in [None, *step[empty]]:
                moved = sizes[a] - (sizes[b] if b is not None else 0)
                if moved <= 0 or atoms[empty] + moved > budget:
                    continue
                if b is None and len(step[full]) == 1:
                    continue  # a rank keeps at least one complex
                narrowed = abs(gap - 2 * moved)
                if narrowed < best[0]:
                    best = (narrowed, a, b)
        _, given, back = best
        if given is None:
            return
        step[full].remove(given)
        step[empty].append(given)
        moved = sizes[given]
        if back is not None:
            step[empty].remove(back)
            step[full].append(back)
            moved -= sizes[back]
        atoms[full] -= moved
        atoms[empty] += moved


def sharded_steps(sizes: Sequence[int], budget: int, ranks: int, seed: int) -> list[Step]:
    """What packing rank by rank gives, the baseline the balance is measured against: the
    shuffled order sharded as ``DistributedSampler`` shards it (rank ``r`` takes every
    ``ranks``-th complex from ``r``), each shard packed up to ``budget`` by PyG's
    ``DynamicBatchSampler``, as many steps as the rank with the fewest batches has."""
    from torch_geometric.data import Data
    from torch_geometric.loader import DynamicBatchSampler

    order = _order(len(sizes), seed, ())
    packed = []
    for r in range(ranks):
        shard = order[r::ranks]
        graphs = [Data(num_nodes=sizes[i]) for i in shard]
        packed.append(
            [[shard[j] for j in batch] for batch in DynamicBatchSampler(graphs, budget, "node")]
        )
    return [list(step) for step in zip(*packed, strict=False)]
