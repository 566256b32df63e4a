"""A run's complexes: synthetic, or read from a PDBbind-style root under the atom policy, split
into training and validation sets under the data seed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch_geometric.data import Data

from model._config import DataSpec, TrainConfig
from model._errors import ConfigError
from model._pdbbind import Skipped, default_cache_dir, load_pdbbind
from model._readers import AtomPolicy
from model._synthetic import synthetic_complexes


@dataclass
class Dataset:
    train: list[Data]
    val: list[Data]
    skipped: list[Skipped]


def load_dataset(config: TrainConfig) -> Dataset:
    """The run's complexes, split into training and validation sets under the data seed."""
    spec = config.data
    skipped: list[Skipped] = []
    if spec.source == "synthetic":
        complexes = synthetic_complexes(spec.num_synthetic, spec.max_atoms, seed=spec.seed)
    else:
        cache = spec.cache_dir or default_cache_dir()
        report = load_pdbbind(spec.source, atom_policy(spec), spec.labels, cache, spec.strict)
        complexes, skipped = report.complexes, report.skipped
    if len(complexes) < 2:
        raise ConfigError(f"data.source={spec.source}: {len(complexes)} usable complex(es); need 2")
    order = torch.randperm(len(complexes), generator=torch.Generator().manual_seed(spec.seed))
    num_val = min(len(complexes) - 1, max(1, round(spec.val_fraction * len(complexes))))
    val = [complexes[i] for i in order[:num_val].tolist()]
    train = [complexes[i] for i in order[num_val:].tolist()]
    return Dataset(train=train, val=val, skipped=skipped)


def atom_policy(spec: DataSpec, max_atoms: int | None = None) -> AtomPolicy:
    """The atoms the model sees of each complex, as the data section says (``max_atoms`` given:
    a different crop, e.g. none to count a complex whole)."""
    return AtomPolicy(
        max_atoms=max_atoms or spec.max_atoms,
        pocket_radius=spec.pocket_radius,
        heavy_only=spec.heavy_only,
        drop_waters=spec.drop_waters,
        keep_metals=spec.keep_metals,
        keep_hetero=spec.keep_hetero,
    )
