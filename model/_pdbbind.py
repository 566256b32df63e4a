"""Protein-ligand complexes in the PDBbind layout.

A root holds ``<id>/`` folders with ``<id>_pocket.pdb`` (or ``<id>_protein.pdb``, cut here to a
pocket) and ``<id>_ligand.sdf`` (``<id>_ligand.mol2`` when RDKit cannot read the sdf). The cut
keeps whole residues with a heavy atom within ``pocket_radius`` of a ligand heavy atom; at the
default 8 A it keeps 0.94 of the heavy atoms of PDBbind's own pocket files (0.83 to 1.00 over
pdbbind-mini; their nominal 10 A keeps 1.39). Labels come from
PDBbind's ``INDEX_*_data.*`` file (in the root or in ``index/``) or from a CSV with ``id,pk``.

gemmi reads the proteins and RDKit the ligands. The atom policy, by default: heavy atoms only,
waters dropped, metal ions and other hetero groups kept; then the pocket is cropped to the
``max_atoms - ligand`` atoms nearest the ligand, and every ligand atom is kept.

A complex that cannot be used is reported with its path and reason, and loading goes on
(``strict`` stops at the first one instead). Processed structures are cached per complex, keyed
by the policy and by the size and modification time of the complex's files, so a changed file or
policy rebuilds exactly what it affects. Labels are not cached: editing the index applies at once.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from model._atoms import atom_token
from model._errors import ComplexError, DataError
from model._readers import AtomPolicy, read_ligand, read_protein

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A complex left out, and why."""

    complex_id: str
    path: str
    reason: str


@dataclass
class LoadReport:
    """The usable complexes of a root, and every one that was left out."""

    complexes: list[Data] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        text = f"loaded {len(self.complexes)} complexes, skipped {len(self.skipped)}"
        lines = [f"  {s.complex_id}: {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join([text, *lines])


# --- labels -----------------------------------------------------------------------------------


def find_label_file(root: Path) -> Path | None:
    """PDBbind's index file in ``root`` or ``root/index``, if there is one."""
    for folder in (root, root / "index"):
        hits = sorted(folder.glob("INDEX_*data.*")) if folder.is_dir() else []
        if hits:
            return hits[0]
    return None


def read_labels(path: Path) -> dict[str, float]:
    """pK by lower-case complex id, from a PDBbind index or a CSV with columns ``id,pk``."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    if path.suffix.lower() == ".csv":
        return _read_label_csv(path)
    labels: dict[str, float] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        try:
            labels[fields[0].lower()] = float(fields[3])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}:{number}: expected 'code resolution year pK ...', got {line.strip()!r}"
            ) from None
    return labels


def _read_label_csv(path: Path) -> dict[str, float]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "pk"} <= set(reader.fieldnames):
            raise DataError(f"{path}: a label CSV needs the columns id,pk; got {reader.fieldnames}")
        labels = {}
        for number, row in enumerate(reader, start=2):
            try:
                labels[row["id"].strip().lower()] = float(row["pk"])
            except (TypeError, ValueError):
                raise DataError(f"{path}:{number}: pk {row['pk']!r} is not a number") from None
    return labels


# --- one complex ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Structure:
    """A complex after the policy and the crop, before labelling."""

    pocket_symbols: list[str]
    pocket_pos: np.ndarray
    ligand_symbols: list[str]
    ligand_pos: np.ndarray
    ligand_source: str
    #: atoms before the crop to ``max_atoms`` (pocket and ligand; more than kept when cropped)
    atoms_before_crop: int | None = None


def read_structure(folder: Path, policy: AtomPolicy) -> Structure:
    """Read one ``<id>/`` folder; raises ``ComplexError`` naming the file and the reason."""
    cid = folder.name
    if not folder.is_dir():
        raise ComplexError(cid, str(folder), "listed in the labels but there is no such folder")
    lig_symbols, lig_pos, lig_source = read_ligand(folder, cid, policy)
    pocket_file = folder / f"{cid}_pocket.pdb"
    protein_file = folder / f"{cid}_protein.pdb"
    if pocket_file.is_file():
        poc_symbols, poc_pos, _ = read_protein(pocket_file, cid, policy)
    elif protein_file.is_file():
        poc_symbols, poc_pos, residue = read_protein(protein_file, cid, policy)
        near = _min_distance(poc_pos, lig_pos) <= policy.pocket_radius
        keep = np.isin(residue, residue[near])
        poc_symbols = [s for s, k in zip(poc_symbols, keep, strict=True) if k]
        poc_pos = poc_pos[keep]
        if not poc_symbols:
            reason = f"no protein atom within {policy.pocket_radius} A of the ligand"
            raise ComplexError(cid, str(protein_file), reason)
    else:
        raise ComplexError(cid, str(folder), f"no {pocket_file.name} or {protein_file.name}")

    room = policy.max_atoms - len(lig_symbols)
    if room < 0:
        raise ComplexError(
            cid,
            lig_source,
            f"the ligand has {len(lig_symbols)} atoms, more than max_atoms={policy.max_atoms}",
        )
    order = np.argsort(_min_distance(poc_pos, lig_pos), kind="stable")[:room]
    order.sort()  # keep file order among the atoms kept
    return Structure(
        pocket_symbols=[poc_symbols[i] for i in order],
        pocket_pos=poc_pos[order],
        ligand_symbols=lig_symbols,
        ligand_pos=lig_pos,
        ligand_source=lig_source,
        atoms_before_crop=len(poc_symbols) + len(lig_symbols),
    )


def _min_distance(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    out = np.full(len(points), np.inf)
    for start in range(0, len(ref), 64):
        block = ref[start : start + 64]
        d = np.sqrt(((points[:, None, :] - block[None, :, :]) ** 2).sum(-1)).min(axis=1)
        out = np.minimum(out, d)
    return out


def to_data(structure: Structure, complex_id: str, label: float | None) -> Data:
    """The model's input: tokens, coordinates (pocket first, then ligand) and the label."""
    tokens = [atom_token(s, False) for s in structure.pocket_symbols] + [
        atom_token(s, True) for s in structure.ligand_symbols
    ]
    pos = np.concatenate([structure.pocket_pos, structure.ligand_pos]).astype(np.float32)
    return Data(
        z=torch.tensor(tokens, dtype=torch.long),
        pos=torch.from_numpy(pos),
        y=torch.tensor([math.nan if label is None else label], dtype=torch.float32),
        num_ligand_atoms=len(structure.ligand_symbols),
        complex_id=complex_id,
    )


# --- a whole root -----------------------------------------------------------------------------


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "stagetune" / "complexes"


class StructureCache:
    """Processed structures on disk, one file per complex and policy."""

    def __init__(self, cache_dir: Path | None, policy: AtomPolicy) -> None:
        self.folder = None if cache_dir is None else Path(cache_dir) / policy.digest()
        self.policy = policy
        self.hits = 0
        self.misses = 0

    def get(self, folder: Path) -> Structure:
        if self.folder is None:
            return read_structure(folder, self.policy)
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]
        entry = self.folder / f"{folder.name}-{key}.pt"
        stamp = _fingerprint(folder)
        if entry.is_file():
            try:
                saved = torch.load(entry, weights_only=True)
                # an entry written before it kept the count before the crop is rebuilt
                if saved["fingerprint"] == stamp and "atoms_before_crop" in saved:
                    self.hits += 1
                    return Structure(
                        pocket_symbols=saved["pocket_symbols"],
                        pocket_pos=saved["pocket_pos"].numpy(),
                        ligand_symbols=saved["ligand_symbols"],
                        ligand_pos=saved["ligand_pos"].numpy(),
                        ligand_source=saved["ligand_source"],
                        atoms_before_crop=saved["atoms_before_crop"],
                    )
            except Exception:  # a torn or foreign file is rebuilt, never trusted
                log.debug("rebuilding unreadable cache entry %s", entry)
        self.misses += 1
        structure = read_structure(folder, self.policy)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".tmp{os.getpid()}")
        record = {
            "fingerprint": stamp,
            "pocket_symbols": structure.pocket_symbols,
            "pocket_pos": torch.from_numpy(structure.pocket_pos),
            "ligand_symbols": structure.ligand_symbols,
            "ligand_pos": torch.from_numpy(structure.ligand_pos),
            "ligand_source": structure.ligand_source,
            "atoms_before_crop": structure.atoms_before_crop,
        }
        torch.save(record, tmp)
        tmp.replace(entry)  # atomic: readers see the old entry or the new one, never half
        return structure


def _fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def list_complexes(root: Path, labels: dict[str, float] | None) -> list[tuple[str, Path]]:
    """Every complex id of a root: its folders and, when labels are given, the labelled ids."""
    if not root.is_dir():
        raise DataError(f"{root}: data root not found (expected a folder of <id>/ folders)")
    ids = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and p.name != "index"}
    for cid in labels or {}:
        ids.setdefault(cid, root / cid)
    return sorted((cid, path) for cid, path in ids.items())


def iter_root(
    root: Path,
    policy: AtomPolicy,
    labels_path: Path | None = None,
    cache_dir: Path | None = None,
) -> Iterable[tuple[str, Structure | None, float | None, Skipped | None]]:
    """``(id, structure, label, skipped)`` for every complex; ``skipped`` is None when usable.

    The structure is given whenever it could be read, even when the complex is skipped for want
    of a label, so that ``data inspect`` can still count its atoms.
    """
    label_file = labels_path or find_label_file(root)
    labels = read_labels(label_file) if label_file else None
    cache = StructureCache(cache_dir, policy)
    for cid, folder in list_complexes(root, labels):
        label = None if labels is None else labels.get(cid)
        try:
            structure = cache.get(folder)
        except ComplexError as exc:
            yield cid, None, label, Skipped(cid, exc.path, exc.reason)
            continue
        if label is None:
            where = f"in {label_file}" if label_file else "(no INDEX_*data.* file or labels CSV)"
            yield cid, structure, None, Skipped(cid, str(folder), f"no label for {cid} {where}")
        elif not math.isfinite(label):
            reason = f"label {label} is not a finite number"
            yield cid, structure, None, Skipped(cid, str(label_file), reason)
        else:
            yield cid, structure, label, None
    log.debug("structure cache: %d hits, %d rebuilt", cache.hits, cache.misses)


def load_pdbbind(
    root: str | Path,
    policy: AtomPolicy | None = None,
    labels_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    strict: bool = False,
) -> LoadReport:
    """Load every usable complex of a PDBbind-style root; see the module docstring.

    ``cache_dir=None`` reads every file afresh; ``default_cache_dir()`` is where the command line
    and the training loop keep processed complexes.
    """
    policy = policy or AtomPolicy()
    report = LoadReport()
    for cid, structure, label, skipped in iter_root(
        Path(root),
        policy,
        Path(labels_path) if labels_path else None,
        Path(cache_dir) if cache_dir else None,
    ):
        if skipped is not None or structure is None:
            skipped = skipped or Skipped(cid, str(root), "unusable")
            if strict:
                raise ComplexError(cid, skipped.path, f"{skipped.reason} (stopped: strict)")
            log.warning("skipping %s: %s: %s", cid, skipped.path, skipped.reason)
            report.skipped.append(skipped)
            continue
        report.complexes.append(to_data(structure, cid, label))
    if not report.complexes:
        raise DataError(f"{root}: no usable complex\n{report.summary()}")
    log.info("%s: %s", root, report.summary())
    return report
