"""The plain-torch radius graph against a brute-force reference."""

from __future__ import annotations

import pytest
import torch

import model._radius as radius_module
from model import radius_graph


def reference(pos, r, batch=None, loop=False, k=32):
    """Every pair by brute force; per centre the k nearest, ties to the lower index."""
    n = pos.size(0)
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch
    edges = set()
    for c in range(n):
        near = []
        for j in range(n):
            if batch[j] != batch[c] or (j == c and not loop):
                continue
            d = float(((pos[j].double() - pos[c].double()) ** 2).sum())
            if d <= r * r:
                near.append((d, j))
        near.sort()
        edges.update((j, c) for _, j in near[:k])
    return edges


def as_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


def cloud(sizes, seed, spread=4.0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(sum(sizes), 3, generator=g) * spread
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, batch


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("loop", [False, True])
def test_matches_brute_force_on_random_batches(seed, loop):
    pos, batch = cloud([40, 7, 55], seed)
    got = radius_graph(pos, 3.0, batch, loop=loop, max_num_neighbors=64)
    assert as_set(got) == reference(pos, 3.0, batch, loop=loop, k=64)
    assert got.size(1) == len(as_set(got))  # no duplicate edges


def test_single_graph_without_batch():
    pos, _ = cloud([60], 1)
    assert as_set(radius_graph(pos, 2.5)) == reference(pos, 2.5)


def test_convention_neighbour_first_centre_second_sorted_by_centre_then_neighbour():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    edge_index = radius_graph(pos, 1.5)
    assert edge_index.tolist() == [[1, 0], [0, 1]]
    pos, batch = cloud([30, 30], 3)
    neighbours, centres = radius_graph(pos, 3.0, batch, max_num_neighbors=4)
    key = centres * pos.size(0) + neighbours
    assert torch.all(key[1:] > key[:-1])


def test_empty_input_gives_no_edges():
    edge_index = radius_graph(torch.zeros(0, 3), 5.0, torch.zeros(0, dtype=torch.long))
    assert edge_index.shape == (2, 0) and edge_index.dtype == torch.long


def test_one_atom_graphs():
    pos = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0.2, 0, 0]])
    batch = torch.tensor([0, 1, 2])  # three graphs of one atom each, all within the cutoff
    assert radius_graph(pos, 5.0, batch).size(1) == 0
    assert as_set(radius_graph(pos, 5.0, batch, loop=True)) == {(0, 0), (1, 1), (2, 2)}


def test_duplicate_positions_are_neighbours_not_loops():
    pos = torch.tensor([[1.0, 1, 1], [1.0, 1, 1], [1.0, 1, 1], [9.0, 9, 9]])
    got = radius_graph(pos, 0.1)
    assert as_set(got) == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)}
    assert as_set(got) == reference(pos, 0.1)


def test_very_different_graph_sizes_and_empty_graphs_in_one_batch():
    sizes = [1, 300, 2, 0, 90, 1]
    pos, batch = cloud(sizes, 7, spread=6.0)
    got = radius_graph(pos, 4.0, batch, max_num_neighbors=500)
    assert as_set(got) == reference(pos, 4.0, batch, k=500)
    # no edge crosses graphs
    assert torch.equal(batch[got[0]], batch[got[1]])


@pytest.mark.parametrize("loop", [False, True])
def test_cap_keeps_the_nearest_neighbours(loop):
    pos, batch = cloud([80, 50], 11, spread=1.5)  # dense: every point has many neighbours
    got = radius_graph(pos, 3.0, batch, loop=loop, max_num_neighbors=5)
    assert as_set(got) == reference(pos, 3.0, batch, loop=loop, k=5)
    assert torch.bincount(got[1]).max() == 5


def test_cap_ties_go_to_the_lower_index():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    got = radius_graph(pos, 1.5, max_num_neighbors=2)
    assert sorted(got[0][got[1] == 0].tolist()) == [1, 2]


def test_cutoff_is_inclusive():
    pos = torch.tensor([[0.0, 0, 0], [2.0, 0, 0]])
    assert radius_graph(pos, 2.0).size(1) == 2


def test_chunking_gives_the_same_edges(monkeypatch):
    pos, batch = cloud([40, 70, 3, 55, 1, 20], 5)
    whole = radius_graph(pos, 3.0, batch)
    monkeypatch.setattr(radius_module, "_PAIRS_PER_CHUNK", 2000)
    chunked = radius_graph(pos, 3.0, batch)
    assert torch.equal(whole, chunked)


def test_memory_grows_with_the_sum_of_squares_not_the_batch_square(monkeypatch):
    """Distances are only computed within graphs, in chunks of whole graphs."""
    seen = []
    original = radius_module._radius_chunk

    def spy(pos, counts, *args):
        seen.append(counts.numel() * int(counts.max()) ** 2)  # the chunk's distance matrix
        return original(pos, counts, *args)

    monkeypatch.setattr(radius_module, "_radius_chunk", spy)
    sizes = [120] * 16
    pos, batch = cloud(sizes, 2, spread=10.0)
    radius_graph(pos, 5.0, batch)
    assert sum(seen) == sum(n * n for n in sizes)  # not (16 * 120) ** 2
    monkeypatch.setattr(radius_module, "_PAIRS_PER_CHUNK", 4 * 120 * 120)
    seen.clear()
    radius_graph(pos, 5.0, batch)
    assert max(seen) <= 4 * 120 * 120 and len(seen) == 4


def test_padding_never_more_than_doubles_the_work(monkeypatch):
    seen = []
    original = radius_module._radius_chunk

    def spy(pos, counts, *args):
        seen.append((counts.numel() * int(counts.max()) ** 2, int((counts**2).sum())))
        return original(pos, counts, *args)

    monkeypatch.setattr(radius_module, "_radius_chunk", spy)
    sizes = [600, 3, 3, 3, 3, 3, 3, 3, 3, 250, 240, 260, 1, 1]
    pos, batch = cloud(sizes, 8, spread=8.0)
    radius_graph(pos, 5.0, batch)
    assert sum(p for p, _ in seen) <= 2 * sum(n * n for n in sizes) + 1024 * len(seen)


def test_float64_and_float32_agree():
    pos, batch = cloud([50, 50], 9)
    assert as_set(radius_graph(pos, 3.0, batch)) == as_set(radius_graph(pos.double(), 3.0, batch))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`batch` is not sorted"):
        radius_graph(torch.zeros(3, 3), 1.0, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="`r`"):
        radius_graph(torch.zeros(3, 3), -1.0)
    with pytest.raises(ValueError, match="`max_num_neighbors`"):
        radius_graph(torch.zeros(3, 3), 1.0, max_num_neighbors=0)
    with pytest.raises(ValueError, match="`batch` has 2 entries"):
        radius_graph(torch.zeros(3, 3), 1.0, torch.tensor([0, 0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    pos, batch = cloud([200, 13, 90], 4)
    cpu = radius_graph(pos, 3.0, batch, max_num_neighbors=8)
    gpu = radius_graph(pos.cuda(), 3.0, batch.cuda(), max_num_neighbors=8)
    assert gpu.device.type == "cuda"
    assert torch.equal(cpu, gpu.cpu())
