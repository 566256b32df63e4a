"""Atom typing shared by the real and the synthetic complexes.

A token is an element index, shifted by ``len(ELEMENTS)`` for ligand atoms, so the model's
embedding tells protein and ligand atoms apart without a second input.
"""

from __future__ import annotations

ELEMENTS: tuple[str, ...] = (
    "C",
    "N",
    "O",
    "S",
    "P",
    "F",
    "Cl",
    "Br",
    "I",
    "B",
    "Se",
    "Si",
    "Zn",
    "Mg",
    "Ca",
    "Na",
    "K",
    "Fe",
    "Mn",
    "Cu",
    "Co",
    "Ni",
    "Cd",
    "Hg",
    "other",
)
_INDEX = {symbol.upper(): i for i, symbol in enumerate(ELEMENTS)}
NUM_ATOM_TYPES = 2 * len(ELEMENTS)


def element_index(symbol: str) -> int:
    """Index of an element symbol (any case) in ``ELEMENTS``; unlisted elements map to 'other'."""
    return _INDEX.get(symbol.strip().upper(), _INDEX["OTHER"])


def atom_token(symbol: str, is_ligand: bool) -> int:
    """The embedding token of one atom."""
    return element_index(symbol) + (len(ELEMENTS) if is_ligand else 0)
