"""``stagetune train --workers N`` across nodes: two workers that no one node can hold both of
(each node has one CPU, each worker takes one) train together, one on each node of a real local
cluster, joined by gloo as they would be across machines."""

from __future__ import annotations

import pytest
import torch
from ray.util.state import list_actors

from tuner import train_on_workers

from .conftest import local_cluster

pytestmark = pytest.mark.slow  # a two-node Ray and Ray Train's workers


@pytest.fixture(scope="module")
def two_nodes():
    # the dashboard answers the state API, which says where each worker ran
    with local_cluster({"num_cpus": 1, "include_dashboard": True}, {"num_cpus": 1}) as c:
        yield c


def test_two_workers_on_two_nodes_train_one_model(two_nodes, tiny_config):
    config = tiny_config("data.num_synthetic=17", "train.batch_size=4", "train.workers=2")
    report = train_on_workers(config)
    assert report.workers == 2 and report.epochs[-1].steps >= 1
    assert torch.load(f"{report.run_dir}/model.pt")  # rank 0's weights, written on its node
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True)
    assert len({w.node_id for w in workers}) == 2, workers  # one on each node
