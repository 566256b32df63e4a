"""Batches by atom budget (``train.max_atoms_per_batch``): packed by PyG's DynamicBatchSampler,
never over the budget, shuffled the same way under the same seed, and a complex larger than the
budget named, never dropped."""

from __future__ import annotations

import pytest
from torch_geometric.data import Data

from model import ConfigError, load_dataset, run_training
from model._batching import Batching


def test_every_batch_stays_within_the_budget_and_all_complexes_train(tiny_config):
    config = tiny_config("train.max_atoms_per_batch=150")
    data = load_dataset(config)
    batching = Batching(config.train)
    for _ in range(2):  # two epochs, two orders
        batches = [b for b in batching.train_loader(data.train)]  # a packed loader has no len()
        assert all(b.num_nodes <= 150 for b in batches)
        assert sum(b.num_graphs for b in batches) == len(data.train)
    assert max(c.num_nodes for c in data.train) < 150 < sum(c.num_nodes for c in data.train)


def test_an_epoch_reports_its_steps_complexes_time_and_measured_peak(tiny_config):
    config = tiny_config("train.max_atoms_per_batch=150", "train.epochs=2")
    report = run_training(config, measure_memory=True)
    data = load_dataset(config)
    for epoch in report.epochs:
        per_step = epoch.complexes_per_step
        assert epoch.steps >= 2 and per_step is not None
        assert per_step["min"] <= per_step["mean"] <= per_step["max"]
        assert per_step["mean"] * epoch.steps == pytest.approx(len(data.train))
        assert epoch.step_seconds is not None and epoch.step_seconds > 0
        assert epoch.peak_bytes is not None and epoch.peak_bytes > 0
    unmeasured = run_training(config)
    assert all(e.peak_bytes is None for e in unmeasured.epochs)  # a CPU measures when asked


def test_same_seed_same_batches_and_same_run(tiny_config):
    a = run_training(tiny_config("train.max_atoms_per_batch=150", "train.epochs=2"))
    b = run_training(tiny_config("train.max_atoms_per_batch=150", "train.epochs=2"))
    assert [e.val_loss for e in a.epochs] == [e.val_loss for e in b.epochs]
    assert [e.complexes_per_step for e in a.epochs] == [e.complexes_per_step for e in b.epochs]


def test_a_complex_larger_than_the_budget_is_named(tiny_config):
    config = tiny_config("train.max_atoms_per_batch=150")
    big = Data(num_nodes=400, complex_id="1abc")
    with pytest.raises(ConfigError, match=r"max_atoms_per_batch=150: 1abc has 400 atoms"):
        Batching(config.train).check([big])
    too_small = tiny_config("train.max_atoms_per_batch=20")  # synthetic complexes of up to 60
    with pytest.raises(ConfigError, match="more than a whole batch may hold"):
        run_training(too_small)


def test_without_a_budget_batches_are_batch_size_complexes(tiny_config):
    config = tiny_config()
    report = run_training(config)
    data = load_dataset(config)
    epoch = report.epochs[0]
    assert epoch.complexes_per_step["max"] == config.train.batch_size
    assert epoch.steps == -(-len(data.train) // config.train.batch_size)


def test_a_run_of_one_step_epochs_measures_both_its_memory_and_its_step_time(tiny_config):
    """On a CPU, a profiled step is slower than a timed one: with ``measure_memory`` the run
    profiles every other step, counted across epochs, so a run whose epochs are one step each
    still times steps (the run's median) as well as measuring its peak."""
    config = tiny_config("train.batch_size=64", "train.epochs=4")
    report = run_training(config, measure_memory=True)
    assert [e.steps for e in report.epochs] == [1, 1, 1, 1]
    profiled = [e.peak_bytes is not None for e in report.epochs]
    timed = [e.step_seconds is not None for e in report.epochs]
    assert profiled == [True, False, True, False] and timed == [False, True, False, True]
    assert report.timed_steps == 2 and report.step_seconds > 0
    assert report.peak_bytes == max(e.peak_bytes for e in report.epochs if e.peak_bytes)
    unmeasured = run_training(config)
    assert unmeasured.timed_steps == 4 and unmeasured.peak_bytes is None
