"""What a trial reports to Ray Tune is one typed record from the worker to the driver: written
once with the record's own dump, read back whole, and what an earlier version reported (a search
resumed from its experiment) still read."""

from __future__ import annotations

import json
import math

import pytest

from model import load_train_config
from stagetune_api import SCORE, EpochFigures, EpochReport, FitReport
from tests.conftest import TINY
from tuner import Probe, ProbeResult, ProbeSample, device_for, discover
from tuner._trials import epoch_metrics, no_memory_failure, probe_of


@pytest.fixture(scope="module")
def probed() -> ProbeResult:
    config = load_train_config([*TINY, "train.device=cpu"])
    device = device_for(discover("256MiB"), "cpu")
    with Probe(config, device, ProbeSample.synthetic(30), 0.9, 20) as probe:
        return probe.find_max_batch(4)


def test_a_fit_report_travels_as_tune_metrics_and_reads_back_whole(probed):
    report = FitReport(
        score=12.5,
        fits=True,
        feasible=True,
        config_hash="ab" * 32,
        probe=probed.to_json(),
        device="cpu",
        device_model="x86",
        node_id="n1",
        started=1.0,
    )
    metrics = report.metrics()
    assert metrics[SCORE] == 12.5  # the searcher's metric, flat
    assert all(isinstance(v, float | str) for v in metrics.values())  # Tune's loggers take these
    read = FitReport.of_metrics({**metrics, "trial_id": "t1", "time_total_s": 3.0})
    assert read == report
    probe = probe_of(read)
    assert probe is not None and probe.max_batch_size == probed.max_batch_size
    assert no_memory_failure(metrics)


def test_a_fit_trial_of_an_earlier_version_still_reads(probed):
    flat = {
        SCORE: 0.0,
        "fits": False,
        "feasible": False,
        "invalid": None,
        "config_hash": "cd" * 32,
        "probe": json.dumps(probed.to_json()),
        "device": "cpu",
        "node_id": "n2",
        "started": 2.0,
    }
    read = FitReport.of_metrics(flat)
    assert read is not None and read.fits is False and read.node_id == "n2"
    assert probe_of(read).max_batch_size == probed.max_batch_size
    assert not no_memory_failure(flat)  # a failure of memory: larger models are pruned
    invalid = {SCORE: 0.0, "fits": False, "feasible": False, "invalid": "lmax must be 1 or 2"}
    assert no_memory_failure(invalid) and probe_of(FitReport.of_metrics(invalid)) is None
    assert FitReport.of_metrics({"trial_id": "t3"}) is None  # crashed before reporting


def test_an_epoch_report_is_flat_for_asha_and_reads_back():
    epoch = EpochFigures(
        epoch=3,
        train_loss=0.5,
        val_loss=0.7,
        val_rmse=0.84,
        val_pearson=math.nan,
        seconds=1.0,
        lr=1e-3,
    )
    config = load_train_config(TINY)
    metrics = epoch_metrics(epoch, config, {"node_id": "n1", "started": 5.0})
    assert metrics["val_loss"] == 0.7 and metrics["val_pearson"] is None  # NaN: not a number
    read = EpochReport.of_metrics({**metrics, "training_iteration": 3})
    assert read is not None and read.epoch == 3 and read.config_hash == config.digest()
    assert EpochReport.of_metrics({"trial_id": "t"}) is None
