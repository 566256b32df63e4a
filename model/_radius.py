"""Radius graph in plain torch.

torch_geometric's ``radius_graph`` delegates to torch-cluster or pyg-lib. This one needs neither:
it enumerates the candidate pairs of each graph of a batch (never pairs across graphs), so memory
grows with the sum of n_i squared over the graphs, not with the square of the whole batch.
Candidate pairs are processed in chunks of whole graphs, which bounds the transient memory of a
large batch by ``_PAIRS_PER_CHUNK`` (or by one graph's n_i squared if that is larger).
"""

from __future__ import annotations

import torch
from torch import Tensor

_PAIRS_PER_CHUNK = 1 << 23


def radius_graph(
    pos: Tensor,
    r: float,
    batch: Tensor | None = None,
    loop: bool = False,
    max_num_neighbors: int = 32,
) -> Tensor:
    """Edges between points closer than ``r`` within the same graph.

    Args:
        pos: ``[N, 3]`` point coordinates (any float dtype, CPU or CUDA).
        r: the cutoff radius; a pair at distance exactly ``r`` is an edge.
        batch: ``[N]`` graph index of each point, sorted ascending; ``None`` means one graph.
        loop: whether each point is its own neighbour.
        max_num_neighbors: the most neighbours kept per centre; when there are more, the
            nearest are kept (ties broken by the lower neighbour index). With ``loop=True`` the
            centre itself counts as one of them, as in torch_geometric.

    Returns:
        ``[2, E]`` long tensor, torch_geometric's convention: ``edge_index[0]`` is the neighbour,
        ``edge_index[1]`` the centre. Edges are grouped by centre in ascending order; within a
        centre they run from nearest to farthest.
    """
    if pos.dim() != 2:
        raise ValueError(f"The value of `pos` has shape {tuple(pos.shape)}, but must be [N, D].")
    if r < 0:
        raise ValueError(f"The value of `r` is {r}, but must be >= 0.")
    if max_num_neighbors < 1:
        raise ValueError(
            f"The value of `max_num_neighbors` is {max_num_neighbors}, but must be >= 1."
        )
    num_nodes = pos.size(0)
    device = pos.device
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    if batch is None:
        counts = torch.tensor([num_nodes], device=device)
    else:
        if batch.numel() != num_nodes:
            raise ValueError(
                f"The value of `batch` has {batch.numel()} entries, but must have one per point "
                f"({num_nodes})."
            )
        if num_nodes > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("The value of `batch` is not sorted, but must be ascending.")
        counts = torch.bincount(batch)
    counts_cpu = counts.cpu()
    starts_cpu = torch.cumsum(counts_cpu, 0) - counts_cpu

    chunks: list[Tensor] = []
    first_graph = 0
    num_graphs = counts_cpu.numel()
    pairs = counts_cpu.to(torch.int64) ** 2
    while first_graph < num_graphs:
        last_graph = first_graph + 1
        budget = int(pairs[first_graph])
        while last_graph < num_graphs and budget + int(pairs[last_graph]) <= _PAIRS_PER_CHUNK:
            budget += int(pairs[last_graph])
            last_graph += 1
        lo = int(starts_cpu[first_graph])
        hi = int(starts_cpu[last_graph - 1] + counts_cpu[last_graph - 1])
        if hi > lo:
            chunks.append(
                _radius_chunk(
                    pos[lo:hi],
                    counts[first_graph:last_graph],
                    r,
                    loop,
                    max_num_neighbors,
                    offset=lo,
                    num_pairs=budget,
                )
            )
        first_graph = last_graph
    if not chunks:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    return torch.cat(chunks, dim=1)


def _radius_chunk(
    pos: Tensor,
    counts: Tensor,
    r: float,
    loop: bool,
    max_num_neighbors: int,
    offset: int,
    num_pairs: int,
) -> Tensor:
    """Edges of a run of consecutive graphs, by enumerating every pair inside each graph."""
    device = pos.device
    num_nodes = pos.size(0)
    graph_of_node = torch.repeat_interleave(
        torch.arange(counts.numel(), device=device), counts, output_size=num_nodes
    )
    graph_start = torch.cumsum(counts, 0) - counts
    degree = counts[graph_of_node]  # candidates per centre: every node of its graph
    center = torch.repeat_interleave(
        torch.arange(num_nodes, device=device), degree, output_size=num_pairs
    )
    first_pair_of_center = torch.cumsum(degree, 0) - degree
    rank_in_graph = torch.arange(num_pairs, device=device) - first_pair_of_center[center]
    neighbor = graph_start[graph_of_node[center]] + rank_in_graph

    dist2 = (pos[neighbor] - pos[center]).pow(2).sum(dim=-1)
    keep = dist2 <= r * r
    if not loop:
        keep &= neighbor != center
    center, neighbor, dist2 = center[keep], neighbor[keep], dist2[keep]

    # Nearest first within each centre: sort by distance, then (stably) by centre. Candidates were
    # generated in ascending neighbour order, so ties keep the lower neighbour index first.
    order = torch.sort(dist2, stable=True).indices
    order = order[torch.sort(center[order], stable=True).indices]
    center, neighbor = center[order], neighbor[order]

    per_center = torch.bincount(center, minlength=num_nodes)
    if int(per_center.max()) > max_num_neighbors:
        first_edge = torch.cumsum(per_center, 0) - per_center
        rank = torch.arange(center.numel(), device=device) - first_edge[center]
        capped = rank < max_num_neighbors
        center, neighbor = center[capped], neighbor[capped]
    return torch.stack([neighbor + offset, center + offset])
