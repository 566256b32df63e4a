"""``stagetune train --workers N``: the training run on N data-parallel workers of Ray Train, two
CPU processes with gloo here, on a real local Ray; on real complexes from the command line, and
against one process replaying the same global batches."""

from __future__ import annotations

import json
import re
import threading
import time

import psutil
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from model import Batching, Ranks, TrainConfig, Trainer, balanced_steps, load_dataset
from tests.conftest import run_cli
from tuner import WorkerFailed, train_on_workers

from .conftest import local_cluster, two_workers_on_real_complexes

pytestmark = pytest.mark.slow  # Ray Train's workers on a local Ray


@pytest.fixture(scope="module")
def cluster():
    with local_cluster({"num_cpus": 2}) as c:
        yield c


def test_stagetune_train_with_two_workers_on_real_complexes(tmp_path, pdbbind_mini):
    """From the command line, as people run it, with a local Ray of its own: both ranks
    train every epoch to the end on the real complexes, each step's batches within a few
    percent of each other in atoms, and rank 0 keeps the run's files."""
    result = run_cli(*two_workers_on_real_complexes(pdbbind_mini, tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["workers"] == 2 and len(report["epochs"]) == 2
    assert 0.0 <= report["atom_imbalance"] <= 0.05
    assert all(e["steps"] >= 1 and e["val_loss"] is not None for e in report["epochs"])
    run = tmp_path / "runs" / report["run_dir"].rsplit("/", 1)[-1]
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.json", "model.pt"}
    audit = (tmp_path / "runs" / "audit.md").read_text().splitlines()
    assert sum(line.startswith("## ") for line in audit) == 1  # rank 0's entry, once


def one_process(config: TrainConfig, epochs: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The weights of one process trained for ``epochs`` on each step's global batch: both
    ranks' batches of the plan the workers follow (``Batching``'s seed for each epoch, each
    epoch's remainder carried into the next); and each epoch's training loss, over every
    complex it trained on."""
    complexes = list(load_dataset(config).train)
    y = torch.cat([c.y.view(-1) for c in complexes])
    per_epoch = Batching(config.train, Ranks(0, 2)).steps_per_epoch(complexes)
    trainer = Trainer(config, torch.device("cpu"), per_epoch, float(y.mean()), float(y.std()))
    carried: list[int] = []
    losses = []
    for epoch in range(epochs):
        seed = config.train.seed * 1_000_003 + epoch
        sizes = [1] * len(complexes)  # a fixed batch size counts complexes
        steps, carried = balanced_steps(sizes, config.train.batch_size, 2, seed, carried)
        total, count = 0.0, 0
        for step in steps:
            batch = Batch.from_data_list([complexes[i] for s in step for i in s])
            total += float(trainer.train_step(batch)) * batch.num_graphs
            count += batch.num_graphs
        trainer.end_epoch()
        losses.append(total / count)
    return trainer.model.state_dict(), losses


def test_two_workers_train_the_weights_one_process_trains_on_their_global_batches(
    cluster, tiny_config
):
    """Each step's two ranks hold as many complexes, so the mean of their gradients is the
    gradient of the step's global batch, and the weights after two epochs (4 steps of 4 + 4
    complexes, 13 training complexes: one left over each epoch) agree with one process's
    trained on those batches, to float32 rounding (the sums run in another order): a
    thousandth of how far training moved them."""
    config = tiny_config(
        "data.num_synthetic=17", "train.batch_size=4", "train.epochs=2", "train.workers=2"
    )
    report = train_on_workers(config)
    assert report.workers == 2 and report.atom_imbalance == 0.0  # as many complexes a rank
    assert all(e.steps >= 1 for e in report.epochs)
    trained = torch.load(f"{report.run_dir}/model.pt")
    alone, losses = one_process(config, epochs=2)
    untrained, _ = one_process(config, epochs=0)
    # an epoch's training loss is over both ranks' complexes, as one process's over the batches
    assert [e.train_loss for e in report.epochs] == pytest.approx(losses, rel=1e-4)
    # each rank evaluated its share; the figures are over every validation complex, once
    data = load_dataset(config)
    val = list(data.val)
    last = report.epochs[-1]
    assert last.val_complexes == len(val) >= 2
    y = torch.cat([c.y.view(-1) for c in data.train])
    trainer = Trainer(config, torch.device("cpu"), 1, float(y.mean()), float(y.std()))
    trainer.model.load_state_dict(alone)
    assert last.val_loss == pytest.approx(
        trainer.evaluate(DataLoader(val, batch_size=4)).loss, rel=1e-3
    )
    for name, weights in alone.items():
        assert torch.allclose(trained[name], weights, rtol=1e-4, atol=1e-6), name
    apart = max((trained[n] - w).abs().max().item() for n, w in alone.items())
    moved = max((trained[n] - w).abs().max().item() for n, w in untrained.items())
    assert apart < moved / 1000, (apart, moved)


def test_a_worker_that_dies_fails_the_run_saying_so(cluster, tiny_config):
    """One worker's process killed while the run trains (as the kernel's OOM killer or a lost
    node would): the run fails with that worker's rank, not a hang of the other waiting for
    its gradients."""
    config = tiny_config("train.epochs=400", "train.workers=2")
    failed: list[BaseException] = []

    def run() -> None:
        try:
            train_on_workers(config)
        except BaseException as exc:
            failed.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    workers: list[psutil.Process] = []
    deadline = time.time() + 120
    while len(workers) < 2 and time.time() < deadline:
        time.sleep(1.0)
        workers = [p for p in psutil.process_iter(["cmdline"]) if _train_worker(p)]
    assert len(workers) == 2, workers
    time.sleep(5.0)  # both training
    workers[0].kill()  # SIGKILL
    runner.join(timeout=180)
    assert not runner.is_alive(), "the run hung after a worker died"
    [error] = failed
    assert isinstance(error, WorkerFailed), repr(error)
    # by its rank, where Ray Train reports it (it reports a process that died during a call
    # to it without one)
    assert re.match(r"(worker [01]|a worker) of 2 failed: ", str(error)), str(error)
    assert "worker process has died" in str(error)


def _train_worker(process: psutil.Process) -> bool:
    """Whether ``process`` is a Ray Train worker (Ray titles it ``ray::RayTrainWorker...``)."""
    return any("RayTrainWorker" in part for part in process.info["cmdline"] or [])
