"""Synthetic complexes: statistics of real pockets, learnable labels, determinism."""

from __future__ import annotations

import numpy as np
import torch

from model import ELEMENTS, radius_graph, synthetic_complexes


def test_deterministic_under_a_seed_and_different_across_seeds():
    a, b = synthetic_complexes(3, 200, seed=5), synthetic_complexes(3, 200, seed=5)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.pos, y.pos) and torch.equal(x.z, y.z) and torch.equal(x.y, y.y)
    assert not torch.equal(a[0].pos, synthetic_complexes(1, 200, seed=6)[0].pos)


def test_worst_case_has_exactly_max_atoms():
    assert {c.num_nodes for c in synthetic_complexes(4, 321, worst_case=True)} == {321}
    sizes = [c.num_nodes for c in synthetic_complexes(20, 600)]
    assert min(sizes) >= 250 and max(sizes) <= 600 and len(set(sizes)) > 10


def test_neighbour_counts_match_real_pockets():
    """PDBbind-mini's heavy atoms have 19.9 neighbours within 5 A on average."""
    counts = []
    for c in synthetic_complexes(10, 400):
        counts.append(radius_graph(c.pos, 5.0, max_num_neighbors=1000).size(1) / c.num_nodes)
    assert 17.0 < float(np.mean(counts)) < 23.0


def test_element_mix_matches_real_pockets():
    z = torch.cat([c.z for c in synthetic_complexes(10, 400)])
    protein = z[z < len(ELEMENTS)]
    carbon = float((protein == ELEMENTS.index("C")).float().mean())
    assert 0.60 < carbon < 0.70  # 64.8 % in PDBbind pockets
    assert bool((z >= len(ELEMENTS)).any())  # ligand atoms carry their own tokens


def test_labels_spread_like_pdbbind():
    y = np.array([c.y.item() for c in synthetic_complexes(100, 300)])
    assert 5.0 < y.mean() < 7.0 and 1.2 < y.std() < 2.5
