"""Radius graph in plain torch.

torch_geometric's ``radius_graph`` delegates to torch-cluster or pyg-lib. This one needs neither.
Graphs are processed in chunks of consecutive graphs; each chunk is padded to its largest graph and
all distances within each graph are computed at once (``torch.cdist`` on ``[graphs, n, n]``), never
across graphs. A chunk is closed before padding would more than double its work, and before it
exceeds ``_PAIRS_PER_CHUNK`` pairs (one graph larger than that is a chunk of its own), so memory
grows with the sum of n_i squared over the graphs of a batch, never with the square of the batch.
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
        ``edge_index[1]`` the centre. Edges are sorted by centre, then by neighbour.
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
    sizes = counts.tolist()
    chunks = []
    start = 0
    for first, last in _plan_chunks(sizes):
        stop = start + sum(sizes[first:last])
        if stop > start:
            chunks.append(
                _radius_chunk(pos[start:stop], counts[first:last], r, loop, max_num_neighbors)
                + start
            )
        start = stop
    if not chunks:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    return torch.cat(chunks, dim=1)


def _plan_chunks(sizes: list[int]) -> list[tuple[int, int]]:
    """``[first, last)`` graph ranges whose padded work stays within twice their real work."""
    plan = []
    first = 0
    while first < len(sizes):
        last, widest, real = first + 1, sizes[first], sizes[first] ** 2
        while last < len(sizes):
            wider = max(widest, sizes[last])
            padded = (last - first + 1) * wider**2
            more = real + sizes[last] ** 2
            if padded > _PAIRS_PER_CHUNK or padded > 2 * more + 1024:
                break
            widest, real, last = wider, more, last + 1
        plan.append((first, last))
        first = last
    return plan


def _radius_chunk(pos: Tensor, counts: Tensor, r: float, loop: bool, k: int) -> Tensor:
    """Edges of consecutive graphs with ``counts`` nodes, indices relative to ``pos``."""
    device = pos.device
    width = int(counts.max())
    slot = torch.arange(width, device=device)
    valid = slot[None, :] < counts[:, None]  # [G, width]
    node = (torch.cumsum(counts, 0) - counts)[:, None] + slot[None, :]
    node = torch.where(valid, node, 0)
    padded = pos[node]  # [G, width, D]
    # Exact differences, not the |a|^2 + |b|^2 - 2ab form, so the cutoff is decided exactly.
    dist = torch.cdist(padded, padded, compute_mode="donot_use_mm_for_euclid_dist")
    dist.masked_fill_(~valid[:, None, :], float("inf"))
    if not loop:
        dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    within = (dist <= r) & valid[:, :, None]
    full = within.sum(dim=-1) > k
    if bool(full.any()):
        # Only centres with more than k neighbours are sorted; the stable sort keeps the lower
        # neighbour index first among equal distances.
        order = torch.sort(dist[full], dim=-1, stable=True).indices[:, :k]
        nearest = torch.zeros_like(within[full]).scatter_(1, order, True)
        within[full] = nearest
    graph, centre, neighbour = within.nonzero(as_tuple=True)
    return torch.stack([node[graph, neighbour], node[graph, centre]])
