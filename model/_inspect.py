"""``stagetune data inspect``: what the model would see of each complex of a root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model._errors import ComplexError
from model._pdbbind import iter_root
from model._radius import radius_graph
from model._readers import AtomPolicy


@dataclass(frozen=True)
class ComplexSummary:
    """Atom counts after the policy and the crop; ``edges`` of the radius graph, no self loops.

    ``skipped`` is None for a usable complex, else the reason (the counts are still given when
    the structure itself could be read). ``cropped_from``: the atoms it had before the crop to
    ``max_atoms`` left out the pocket atoms farthest from the ligand; None when none was.
    """

    id: str
    protein_atoms: int | None
    ligand_atoms: int | None
    label: float | None
    edges: int | None
    skipped: str | None
    cropped_from: int | None = None


def inspect_root(
    root: str | Path,
    policy: AtomPolicy | None = None,
    cutoff: float = 5.0,
    max_num_neighbors: int = 32,
    labels_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    strict: bool = False,
) -> list[ComplexSummary]:
    """One summary per complex of ``root``; ``strict`` raises at the first unusable one."""
    out = []
    for cid, structure, label, skipped in iter_root(
        Path(root),
        policy or AtomPolicy(),
        Path(labels_path) if labels_path else None,
        Path(cache_dir) if cache_dir else None,
    ):
        if skipped is not None and strict:
            raise ComplexError(cid, skipped.path, f"{skipped.reason} (stopped: strict)")
        protein = ligand = edges = cropped = None
        if structure is not None:
            protein, ligand = len(structure.pocket_symbols), len(structure.ligand_symbols)
            pos = torch.from_numpy(structure.pocket_pos).float()
            pos = torch.cat([pos, torch.from_numpy(structure.ligand_pos).float()])
            edges = radius_graph(pos, cutoff, max_num_neighbors=max_num_neighbors).size(1)
            before = structure.atoms_before_crop
            cropped = before if before is not None and before > protein + ligand else None
        reason = None if skipped is None else f"{skipped.path}: {skipped.reason}"
        out.append(ComplexSummary(cid, protein, ligand, label, edges, reason, cropped))
    return out
