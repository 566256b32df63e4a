"""Reading one complex's files: the protein with gemmi, the ligand with RDKit, under the atom
policy (``AtomPolicy``: which atoms of a complex the model sees).

gemmi and RDKit are imported when a complex is first read, so the probe and training on synthetic
complexes run where neither is installed (a bare GPU machine, say).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model._errors import ComplexError

if TYPE_CHECKING:
    from rdkit import Chem


@cache
def _chem() -> Any:
    """RDKit's ``Chem``, imported when a ligand is first read."""
    from rdkit import Chem, rdBase

    rdBase.LogToPythonStderr()
    return Chem


_CACHE_VERSION = 1


@dataclass(frozen=True)
class AtomPolicy:
    """Which atoms of a complex the model sees."""

    max_atoms: int = 600
    pocket_radius: float = 8.0
    heavy_only: bool = True
    drop_waters: bool = True
    keep_metals: bool = True
    keep_hetero: bool = True

    def __post_init__(self) -> None:
        if self.max_atoms < 1:
            raise ValueError(f"The value of `max_atoms` is {self.max_atoms}, but must be >= 1.")
        if self.pocket_radius <= 0:
            raise ValueError(
                f"The value of `pocket_radius` is {self.pocket_radius}, but must be > 0."
            )

    def digest(self) -> str:
        text = json.dumps({"v": _CACHE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_protein(
    path: Path, cid: str, policy: AtomPolicy
) -> tuple[list[str], np.ndarray, np.ndarray]:
    import gemmi  # here, not at import: see the module docstring

    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError and ValueError on broken files
        raise ComplexError(cid, str(path), f"gemmi cannot read it: {exc}") from None
    if len(st) == 0:
        raise ComplexError(cid, str(path), "no atoms could be read (not a PDB file?)")
    st.remove_alternative_conformations()
    symbols: list[str] = []
    coords: list[list[float]] = []
    residues: list[int] = []
    residue_number = 0
    for chain in st[0]:
        for res in chain:
            residue_number += 1
            if policy.drop_waters and res.is_water():
                continue
            for atom in res:
                element = atom.element
                if policy.heavy_only and element.name in ("H", "D"):
                    continue
                if element.is_metal and not policy.keep_metals:
                    continue
                if (
                    res.het_flag == "H"
                    and not element.is_metal
                    and not res.is_water()
                    and not policy.keep_hetero
                ):
                    continue
                symbols.append(element.name)
                coords.append(atom.pos.tolist())
                residues.append(residue_number)
    if not symbols:
        raise ComplexError(cid, str(path), "no atoms left after the atom policy")
    pos = np.asarray(coords, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ComplexError(cid, str(path), "NaN or infinite coordinates")
    return symbols, pos, np.asarray(residues)


def read_ligand(folder: Path, cid: str, policy: AtomPolicy) -> tuple[list[str], np.ndarray, str]:
    sdf, mol2 = folder / f"{cid}_ligand.sdf", folder / f"{cid}_ligand.mol2"
    chem = _chem()
    attempts: list[tuple[Path, Callable[[str], Chem.Mol | None]]] = [
        (sdf, lambda p: chem.MolFromMolFile(p, removeHs=False)),
        (mol2, lambda p: chem.MolFromMol2File(p, removeHs=False)),
        # Coordinates and elements are all the model needs: a ligand RDKit cannot sanitize
        # (an unusual valence, say) is still usable.
        (sdf, lambda p: chem.MolFromMolFile(p, removeHs=False, sanitize=False)),
        (mol2, lambda p: chem.MolFromMol2File(p, removeHs=False, sanitize=False)),
    ]
    present = [(path, read) for path, read in attempts if path.is_file()]
    if not present:
        raise ComplexError(cid, str(folder), f"no ligand file ({sdf.name} or {mol2.name})")
    messages: list[str] = []
    for path, read in present:
        mol, message = _quietly(read, str(path))
        if message:
            messages.append(f"{path.name}: {message}")
        if mol is None or mol.GetNumConformers() == 0:
            continue
        conf = mol.GetConformer()
        keep = [a.GetIdx() for a in mol.GetAtoms() if not policy.heavy_only or a.GetAtomicNum() > 1]
        if not keep:
            raise ComplexError(cid, str(path), "the ligand has no heavy atoms")
        symbols = [mol.GetAtomWithIdx(i).GetSymbol() for i in keep]
        pos = np.array([list(conf.GetAtomPosition(i)) for i in keep], dtype=np.float64)
        if not np.isfinite(pos).all():
            raise ComplexError(cid, str(path), "NaN or infinite ligand coordinates")
        return symbols, pos, str(path)
    detail = "; ".join(dict.fromkeys(messages)) or "no molecule in the file"
    names = " or ".join(sorted({p.name for p, _ in present}))
    raise ComplexError(cid, str(folder), f"RDKit cannot read {names} ({detail})")


def _quietly(read: Callable[[str], Chem.Mol | None], path: str) -> tuple[Chem.Mol | None, str]:
    """Run an RDKit reader, returning its molecule and what it complained about."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        try:
            mol = read(path)
        except Exception as exc:  # RDKit raises on some malformed blocks instead of returning None
            mol = None
            buffer.write(str(exc))
    lines = [ln.split("]", 1)[-1].strip() for ln in buffer.getvalue().splitlines() if ln.strip()]
    important = [ln for ln in lines if "tagged as 2D" not in ln]
    return mol, (important[0] if important else "")
