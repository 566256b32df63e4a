"""The probe's figures on the user's data against what a run meets there."""

from __future__ import annotations

import statistics

import pytest

from model import load_dataset, load_train_config
from model._batching import Batching
from tuner._on_data import _epochs


def test_the_average_batch_is_the_one_a_runs_epochs_train_on(tmp_path, pdbbind_mini):
    """The cycle's step is predicted for the average batch of an epoch; one shuffled epoch of 16
    real complexes packs into 4 batches where most orders pack into 3, so the average batch is
    judged over many orders, as the run's epochs meet them."""
    config = load_train_config(
        ["train.max_atoms_per_batch=2042", "train.seed=0", f"data.cache_dir={tmp_path}"],
        settings={"data.source": str(pdbbind_mini), "data.max_atoms": 600},
    )
    complexes = list(load_dataset(config).train)
    predicted = [
        sum(complexes[i].num_nodes for i in p) for e in _epochs(complexes, 2042, 0) for p in e
    ]
    batching = Batching(config.train)
    run = [b.num_nodes for _ in range(150) for b in batching.train_loader(complexes)]
    assert statistics.mean(predicted) == pytest.approx(statistics.mean(run), rel=0.03)
    assert max(predicted) == max(run)  # the footprint's batch: the fullest a run meets
