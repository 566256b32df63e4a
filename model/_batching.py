"""How a run's complexes become batches: ``train.batch_size`` complexes each, or, with
``train.max_atoms_per_batch``, as many complexes as fit in that many atoms.

Graphs differ in size, and a step's memory grows with the atoms of its batch, not with its count
of complexes: a budget in atoms fills the memory the probe measured whatever the mix of sizes.
The packing is PyG's ``DynamicBatchSampler`` (mode ``node``) over the complexes in an order
shuffled each epoch by a generator seeded with ``train.seed``, so a run is the same run under
the same seed. A complex larger than the budget is an error that names it: it would otherwise
be a batch of its own, over the budget, or be dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader, DynamicBatchSampler

from model._balance import Ranks, atom_imbalance, balanced_steps
from model._config import LoopSpec
from model._errors import ConfigError


class Batching:
    def __init__(self, loop: LoopSpec, ranks: Ranks | None = None) -> None:
        self.batch_size = loop.batch_size
        self.atoms = loop.max_atoms_per_batch
        self.eval_batch_size = loop.eval_batch_size or loop.batch_size
        self.generator = torch.Generator().manual_seed(loop.seed)
        self._fixed: DataLoader | None = None
        self.ranks, self.seed = ranks or Ranks(), loop.seed
        self._epoch, self._carried = 0, list[int]()
        #: of the last epoch planned for several ranks: each step's atom imbalance, and the
        #: complexes its batches hold together
        self.imbalance: list[float] = []
        self.complexes: list[int] = []
        #: of the last epoch planned for several ranks: each step's fullest batch, in what the
        #: budget counts (atoms, or complexes for a fixed batch size)
        self.fullest: list[int] = []

    def check(self, complexes: Sequence[Data]) -> None:
        """Every complex fits in the atom budget; the error names the first that does not."""
        if self.atoms is None:
            return
        for c in complexes:
            if c.num_nodes > self.atoms:
                name = getattr(c, "complex_id", None) or "a synthetic complex"
                raise ConfigError(
                    f"train.max_atoms_per_batch={self.atoms}: {name} has {c.num_nodes} atoms, "
                    "more than a whole batch may hold; raise the budget to at least "
                    f"{c.num_nodes}, or crop complexes with a smaller data.max_atoms"
                )

    def train_loader(self, complexes: Sequence[Data]) -> DataLoader:
        """This epoch's training batches (a new order every epoch); of several ranks, this
        rank's batch of each step (``_rank_loader``)."""
        if self.ranks.world > 1:
            return self._rank_loader(complexes)
        if self.atoms is None:
            if self._fixed is None:  # one loader: its sampler draws a new order each epoch
                self._fixed = DataLoader(
                    list(complexes),
                    batch_size=self.batch_size,
                    shuffle=True,
                    generator=self.generator,
                )
            return self._fixed
        order = torch.randperm(len(complexes), generator=self.generator).tolist()
        return self._packed([complexes[i] for i in order])

    def eval_loader(self, complexes: Sequence[Data]) -> DataLoader:
        """Evaluation batches, in the data's order; of several ranks, this rank's share of
        the complexes (every ``world``-th from its rank: ``Trainer.evaluate`` gathers the
        ranks' predictions)."""
        if self.ranks.world > 1:
            complexes = list(complexes)[self.ranks.rank :: self.ranks.world]
        if self.atoms is None:
            return DataLoader(list(complexes), batch_size=self.eval_batch_size)
        return self._packed(list(complexes))

    def steps_per_epoch(self, complexes: Sequence[Data]) -> int:
        """Batches in an epoch (for an atom budget: as packed in the data's own order; a
        shuffled epoch packs within a batch or two of it)."""
        if self.ranks.world > 1:
            sizes, budget = self._sizes(complexes)
            return len(balanced_steps(sizes, budget, self.ranks.world, self.seed)[0])
        if self.atoms is None:
            return math.ceil(len(complexes) / self.batch_size)
        packs = DynamicBatchSampler(list(complexes), max_num=self.atoms, mode="node")
        return sum(1 for _ in packs)  # it has no len(): its count depends on the order

    def _packed(self, complexes: list[Data]) -> DataLoader:
        assert self.atoms is not None
        sampler = DynamicBatchSampler(complexes, max_num=self.atoms, mode="node")
        return DataLoader(complexes, batch_sampler=sampler)

    def _rank_loader(self, complexes: Sequence[Data]) -> DataLoader:
        """This rank's batch of each of the epoch's steps, planned alike by every rank
        (``model._balance``): as many steps on every rank, each step's batches near-equal in
        atoms (in complexes, for a fixed batch size); an uneven remainder is carried into the
        next epoch."""
        sizes, budget = self._sizes(complexes)
        seed = self.seed * 1_000_003 + self._epoch  # the same on every rank, new each epoch
        steps, self._carried = balanced_steps(sizes, budget, self.ranks.world, seed, self._carried)
        self._epoch += 1
        self.imbalance = [atom_imbalance(step, sizes) for step in steps]
        self.complexes = [sum(len(batch) for batch in step) for step in steps]
        self.fullest = [max(sum(sizes[i] for i in batch) for batch in step) for step in steps]
        batches = [step[self.ranks.rank] for step in steps]
        return DataLoader(list(complexes), batch_sampler=batches)

    def _sizes(self, complexes: Sequence[Data]) -> tuple[list[int], int]:
        """What a rank's budget counts of each complex, and the budget: atoms, or complexes."""
        if self.atoms is None:
            return [1] * len(complexes), self.batch_size
        return [int(c.num_nodes) for c in complexes], self.atoms
