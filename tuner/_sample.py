"""What a probe's batches are made of: the worst case a training batch can be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch_geometric.data import Batch, Data

from model import AtomPolicy, radius_graph, read_structure, synthetic_complex, to_data


class ProbeSample:
    """The complex every probe batch is made of: the worst case a training batch can be.

    ``synthetic(max_atoms)``: of ``draws`` synthetic complexes of exactly ``max_atoms`` atoms at
    the packing density of real pockets, the one with the most radius-graph edges at the model's
    cutoff and neighbour cap (the default). Memory and time grow with edges, and packing varies
    from complex to complex: a typical draw would be beaten by a denser one in real batches.

    ``from_folder(path, max_atoms)``: a real PDBbind-style complex cropped to the ``max_atoms``
    atoms nearest its ligand.
    """

    def __init__(
        self,
        data: Data,
        source: str,
        sized: Callable[[int], Data] | None = None,
        smallest: int = 8,
    ) -> None:
        self.data = data
        self.source = source
        self._sized = sized  # a complex of the same worst case with n atoms
        self.smallest = smallest  # the fewest atoms ``sized`` can make a complex of

    @classmethod
    def synthetic(
        cls,
        max_atoms: int,
        cutoff: float = 5.0,
        max_num_neighbors: int = 32,
        seed: int = 0,
        draws: int = 64,
    ) -> ProbeSample:
        def edges(d: Data) -> int:
            return radius_graph(d.pos, cutoff, loop=True, max_num_neighbors=max_num_neighbors).size(
                1
            )

        def densest(atoms: int, draws: int) -> Data:
            return max(
                (synthetic_complex(seed, i, atoms, worst_case=True) for i in range(draws)),
                key=edges,
            )

        data = densest(max_atoms, draws)
        source = (
            f"synthetic worst case: {max_atoms} atoms, {edges(data)} edges, the densest of {draws}"
        )
        return cls(data, source, sized=lambda n: densest(n, max(4, draws // 8)))

    @classmethod
    def from_folder(cls, folder: str | Path, max_atoms: int) -> ProbeSample:
        folder = Path(folder)

        def cropped(atoms: int) -> Data:
            structure = read_structure(folder, AtomPolicy(max_atoms=atoms))
            return to_data(structure, folder.name, label=6.0)

        full = read_structure(folder, AtomPolicy(max_atoms=max_atoms))
        data = to_data(full, folder.name, label=6.0)
        ligand = len(full.ligand_symbols)  # every ligand atom is kept: no crop goes below it
        source = f"{folder} cropped to {data.num_nodes} atoms"
        return cls(data, source, sized=cropped, smallest=max(8, ligand + 1))

    @property
    def atoms(self) -> int:
        return int(self.data.num_nodes)

    def batch(self, size: int) -> Batch:
        return Batch.from_data_list([self.data] * size)

    def packed(self, atoms: int) -> Batch:
        """A batch of exactly ``atoms`` atoms (or as close as complexes of ``smallest`` atoms come)
        of worst-case complexes of mixed sizes: the sample's own size, and 7/8, 3/4, 5/8 and 1/2
        of it (none smaller than ``smallest``: a real complex is never cropped below its ligand),
        then one of the atoms left, when there are at least ``smallest``."""
        if self._sized is None:  # no other sizes to be had: the sample's own, repeated
            return self.batch(max(1, atoms // self.atoms))
        sizes = [max(self.smallest, self.atoms * k // 8) for k in (8, 6, 4, 7, 5)]
        made: dict[int, Data] = {}
        complexes, left, i = [], atoms, 0
        while left >= self.smallest:
            size = sizes[i % len(sizes)] if left >= sizes[i % len(sizes)] else left
            if size not in made:
                made[size] = self.data if size == self.atoms else self._complex(size)
            complexes.append(made[size])
            left -= made[size].num_nodes
            i += 1
        return Batch.from_data_list(complexes)

    def _complex(self, atoms: int) -> Data:
        assert self._sized is not None
        return self._sized(atoms)
