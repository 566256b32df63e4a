"""Radius graph: the project's per-graph pairs against a dense torch.cdist reference.

Batches of 1 to 64 worst-case complexes of 600 atoms (cutoff 5 A, at most 32 neighbours), as
ViSNet calls it. Each case runs in its own process; the table is Markdown for BENCHMARKS.md.

    python bench/radius_graph.py [--sizes 1,4,16,64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import in_subprocess, mib, timed

CUTOFF, CAP, ATOMS = 5.0, 32, 600


def dense_radius_graph(pos, r, batch, max_num_neighbors):
    """The textbook dense version: all N x N distances of the batch, then the k nearest."""
    import torch

    d = torch.cdist(pos, pos)
    d.masked_fill_(batch[:, None] != batch[None, :], float("inf"))
    d.fill_diagonal_(float("inf"))
    k = min(max_num_neighbors, pos.size(0))
    dist, nbr = torch.topk(d, k, dim=1, largest=False)
    keep = dist <= r
    centre = torch.arange(pos.size(0))[:, None].expand_as(nbr)
    return torch.stack([nbr[keep], centre[keep]])


def one_case(method: str, size: int, repeats: int) -> dict[str, object]:
    import torch
    from torch_geometric.data import Batch

    from model import radius_graph, synthetic_complexes

    torch.set_num_threads(2)
    b = Batch.from_data_list(synthetic_complexes(size, ATOMS, seed=0, worst_case=True))
    fn = radius_graph if method == "ours" else dense_radius_graph
    edges = fn(b.pos, CUTOFF, b.batch, max_num_neighbors=CAP).size(1)
    stats = timed(lambda: fn(b.pos, CUTOFF, b.batch, max_num_neighbors=CAP), repeats)
    return {"method": method, "complexes": size, "edges": edges, **stats}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,16,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", nargs=2, metavar=("METHOD", "SIZE"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case[0], int(args.case[1]), args.repeats)))
        return
    print(
        "| complexes | atoms | edges | ours: time | ours: peak MiB | cdist: time | "
        "cdist: peak MiB | speed-up | memory ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in [int(s) for s in args.sizes.split(",")]:
        ours = in_subprocess(__file__, "--case", "ours", str(size), "--repeats", str(args.repeats))
        dense = in_subprocess(
            __file__, "--case", "dense", str(size), "--repeats", str(args.repeats)
        )
        if "error" in dense:
            print(
                f"| {size} | {size * ATOMS} | {ours['edges']} | {ours['median_s'] * 1e3:.1f} ms "
                f"| {mib(ours['peak_bytes'])} | failed: {dense['error']} | | | |"
            )
            continue
        assert ours["edges"] == dense["edges"], (ours, dense)
        print(
            f"| {size} | {size * ATOMS} | {ours['edges']} | {ours['median_s'] * 1e3:.1f} ms | "
            f"{mib(ours['peak_bytes'])} | {dense['median_s'] * 1e3:.1f} ms | "
            f"{mib(dense['peak_bytes'])} | {dense['median_s'] / ours['median_s']:.1f}x | "
            f"{dense['peak_bytes'] / max(ours['peak_bytes'], 1):.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
