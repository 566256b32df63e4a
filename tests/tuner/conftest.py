"""The tuner's tests share a local Ray cluster made by ``local_cluster``: a module's fixture
starts one (Ray on two cores starts slowly: one per module, never one per test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster


@contextmanager
def local_cluster(head: dict[str, Any], *workers: dict[str, Any]) -> Iterator[Cluster]:
    """A head with ``head``'s resources and a worker node for each of ``workers`` (the
    arguments of ``Cluster.add_node``), without a dashboard unless ``head`` asks for one; this
    process connected to it until the end, when both stop."""
    cluster = Cluster(initialize_head=True, head_node_args={"include_dashboard": False, **head})
    for worker in workers:
        cluster.add_node(**worker)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def two_workers_on_real_complexes(data: Path, folder: Path) -> list[str]:
    """``stagetune train``'s arguments for two CPU workers on the real complexes of ``data``:
    a small model, 2 epochs, 2,048 atoms a rank, its run folders and cache in ``folder``."""
    return [
        *("train", "--workers", "2", "--data", str(data), "--epochs", "2", "--device", "cpu"),
        *("--output", str(folder / "runs"), "--json"),
        *("model.hidden_channels=16", "model.num_layers=2", "model.num_heads=2"),
        *("model.num_rbf=8", "data.max_atoms=600", f"data.cache_dir={folder / 'cache'}"),
        "train.max_atoms_per_batch=2048",
    ]
