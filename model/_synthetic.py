"""Synthetic protein-ligand complexes: the embedded default data set and the probe's worst case.

Real pockets (PDBbind v2020, heavy atoms, waters dropped) have a characteristic element mix and
packing density: about 20 heavy-atom neighbours within 5 A on average. A synthetic complex copies
both, so its radius graph, and with it the memory and time of a training step, matches a real one
of the same size:

- the ligand is a branched chain grown with 1.5 A bonds and no two atoms closer than 2.3 A;
- the pocket is a jittered lattice at protein packing density around it, with an empty shell of
  3 A around the ligand (the closest real contacts are 2 to 3.4 A) and an open mouth, like the
  cleft a real ligand sits in; the atoms nearest the ligand are kept, as the crop of real data does.

The label is a contact score a model can learn: hydrogen-bond-like polar contacts and hydrophobic
carbon contacts raise it, buried polar-apolar contacts lower it, mapped to the pK range of PDBbind.
Each complex is a pure function of ``(seed, index)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from model._atoms import atom_token
from model._pdbbind import _min_distance

POCKET_ELEMENTS = {"C": 0.648, "O": 0.1757, "N": 0.1698, "S": 0.0057, "Zn": 0.0006, "Na": 0.0002}
LIGAND_ELEMENTS = {
    "C": 0.707,
    "N": 0.125,
    "O": 0.1209,
    "F": 0.0225,
    "S": 0.0143,
    "Cl": 0.0041,
    "Br": 0.0041,
    "P": 0.002,
}
LATTICE_SPACING = 2.44  # A; calibrated so the mean neighbour count within 5 A is that of real data
JITTER = 0.35
LIGAND_EXCLUSION = 3.0
MOUTH_HALF_ANGLE = np.deg2rad(55.0)
_BOND = 1.5
_CLASH = 2.3
# Raw contact scores of synthetic complexes of 250 to 600 atoms have this mean and spread;
# they are mapped to pK 6.0 +- 1.8, the centre and spread of PDBbind's general set.
_SCORE_MEAN, _SCORE_STD = 17.0, 5.5
_PK_MEAN, _PK_STD, _PK_NOISE = 6.0, 1.8, 0.25


def synthetic_complexes(
    num: int,
    max_atoms: int = 600,
    seed: int = 0,
    worst_case: bool = False,
    start: int = 0,
) -> list[Data]:
    """``num`` synthetic complexes, numbered ``start`` onwards.

    With ``worst_case`` every complex has exactly ``max_atoms`` atoms (the probe sample);
    otherwise sizes are drawn between ``min(250, max_atoms)`` and ``max_atoms``.
    """
    if max_atoms < 4:
        raise ValueError(f"The value of `max_atoms` is {max_atoms}, but must be >= 4.")
    return [
        synthetic_complex(seed, index, max_atoms, worst_case) for index in range(start, start + num)
    ]


def synthetic_complex(seed: int, index: int, max_atoms: int, worst_case: bool = False) -> Data:
    rng = np.random.default_rng([seed, index])
    low = min(250, max_atoms)
    num_atoms = max_atoms if worst_case else int(rng.integers(low, max_atoms + 1))
    num_ligand = min(int(rng.integers(10, 50)), max(1, num_atoms // 4))
    lig_pos = _grow_ligand(rng, num_ligand)
    lig_el = _draw(rng, LIGAND_ELEMENTS, num_ligand)
    poc_pos = _pocket_around(rng, lig_pos, num_atoms - num_ligand)
    poc_el = _draw(rng, POCKET_ELEMENTS, len(poc_pos))
    pk = _label(rng, lig_pos, lig_el, poc_pos, poc_el)

    pos = np.concatenate([poc_pos, lig_pos]).astype(np.float32)
    tokens = [atom_token(e, False) for e in poc_el] + [atom_token(e, True) for e in lig_el]
    return Data(
        z=torch.tensor(tokens, dtype=torch.long),
        pos=torch.from_numpy(pos),
        y=torch.tensor([pk], dtype=torch.float32),
        num_ligand_atoms=num_ligand,
        complex_id=f"synthetic-{seed}-{index}",
    )


def _draw(rng: np.random.Generator, mix: dict[str, float], n: int) -> list[str]:
    symbols = list(mix)
    p = np.array([mix[s] for s in symbols])
    return [symbols[i] for i in rng.choice(len(symbols), size=n, p=p / p.sum())]


def _grow_ligand(rng: np.random.Generator, n: int) -> np.ndarray:
    pos = np.zeros((1, 3))
    degree = [0]
    while len(pos) < n:
        open_atoms = [i for i, d in enumerate(degree) if d < 3]
        parent = open_atoms[int(rng.integers(len(open_atoms)))]
        for _ in range(30):
            step = rng.normal(size=3)
            candidate = pos[parent] + _BOND * step / np.linalg.norm(step)
            dist = np.linalg.norm(pos - candidate, axis=1)
            dist[parent] = np.inf
            if dist.min() >= _CLASH:
                pos = np.vstack([pos, candidate])
                degree[parent] += 1
                degree.append(1)
                break
        else:
            degree[parent] = 3  # crowded: grow elsewhere
    return pos - pos.mean(axis=0)


def _pocket_around(rng: np.random.Generator, lig_pos: np.ndarray, n: int) -> np.ndarray:
    if n <= 0:
        return np.zeros((0, 3))
    lig_radius = float(np.linalg.norm(lig_pos, axis=1).max())
    # A ball that holds n atoms at lattice density outside the excluded shell and the mouth.
    volume = n * LATTICE_SPACING**3 * 1.6
    half = (lig_radius + LIGAND_EXCLUSION) + (3 * volume / (4 * np.pi)) ** (1 / 3) + 2.0
    axis = np.arange(-half, half + 1e-9, LATTICE_SPACING)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid + rng.uniform(-JITTER, JITTER, size=grid.shape) + rng.uniform(-1, 1, size=3)
    nearest = _min_distance(grid, lig_pos)
    mouth = rng.normal(size=3)
    mouth /= np.linalg.norm(mouth)
    cos_to_mouth = grid @ mouth / np.maximum(np.linalg.norm(grid, axis=1), 1e-9)
    ok = (nearest >= LIGAND_EXCLUSION) & (cos_to_mouth < np.cos(MOUTH_HALF_ANGLE))
    grid, nearest = grid[ok], nearest[ok]
    return grid[np.argsort(nearest, kind="stable")[:n]]


_POLAR = {"N", "O"}
_HALOGEN = {"F", "Cl", "Br", "I"}


def _label(
    rng: np.random.Generator,
    lig_pos: np.ndarray,
    lig_el: list[str],
    poc_pos: np.ndarray,
    poc_el: list[str],
) -> float:
    if len(poc_pos) == 0:
        return _PK_MEAN
    d = np.linalg.norm(lig_pos[:, None, :] - poc_pos[None, :, :], axis=-1)
    lig_polar = np.array([e in _POLAR for e in lig_el])[:, None]
    poc_polar = np.array([e in _POLAR for e in poc_el])[None, :]
    lig_carbon = np.array([e == "C" for e in lig_el])[:, None]
    poc_carbon = np.array([e == "C" for e in poc_el])[None, :]
    lig_halogen = np.array([e in _HALOGEN for e in lig_el])[:, None]

    def near(d0: float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp((d - d0) / 0.25))

    score = (
        1.0 * (lig_polar & poc_polar) * near(3.6)
        + 0.25 * (lig_carbon & poc_carbon) * near(4.5)
        - 0.3 * ((lig_polar & poc_carbon) | (lig_carbon & poc_polar)) * near(3.6)
        + 0.4 * (lig_halogen & poc_carbon) * near(4.2)
    ).sum()
    pk = _PK_MEAN + _PK_STD * (score - _SCORE_MEAN) / _SCORE_STD + rng.normal(0, _PK_NOISE)
    return float(np.clip(pk, 0.0, 14.0))
