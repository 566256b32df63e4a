"""What a trial reports to Ray Tune is one typed record from the worker to the driver (written
once with the record's own dump, read back whole, and what an earlier version reported, a search
resumed from its experiment, still read), kept in the trial's record and written by it to
``trials.csv`` under the names the trial tables show."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from model import load_train_config
from stagetune_api import (
    SCORE,
    TRIAL_COLUMNS,
    DataFigures,
    EpochFigures,
    EpochReport,
    FitReport,
    Search,
    Stage,
    TrainedReport,
    TrialRecord,
)
from tests.conftest import TINY
from tuner import Probe, ProbeResult, ProbeSample, device_for, discover, read_trials_csv
from tuner._folder import JobFolder
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


def _record(**reports) -> TrialRecord:
    return TrialRecord(
        stage="prototyping",
        search="fit" if "fit" in reports else "tune",
        trial_id="t1",
        status="probed" if "fit" in reports else "completed",
        variables={"model.hidden_channels": 16},
        **reports,
    )


def test_a_trials_figures_keep_their_type_from_the_worker_to_trials_csv(probed, tmp_path):
    """The driver keeps the worker's report in the trial's record; ``trials.csv`` writes its
    figures under the names the trial tables show, and reads them back as they were measured."""
    on_data = DataFigures(30, 41.5, 60, 12.25, 0.31, 2.3, 39.5, 10, 0.05, 123_456_789)
    probe = dataclasses.replace(probed, data=on_data, max_atoms_per_batch=512)
    report = FitReport(score=1.0, fits=True, feasible=True, config_hash="ab" * 32, probe=probe)
    read = FitReport.of_metrics(report.metrics())
    assert isinstance(read.probe, ProbeResult) and read.probe == probe  # one type, both sides
    trained = TrainedReport(
        last=EpochReport(epoch=4, val_loss=0.61, val_rmse=0.78, val_pearson=0.42),
        val_loss_by_epoch=[0.9, None, 0.7, 0.61],
    )
    folder = JobFolder(tmp_path / "job")
    folder.write_trials([_record(fit=read), _record(trained=trained)])
    rows = {(r["search"], r["variable"]): r["value"] for r in read_trials_csv(folder.trials_csv)}
    assert rows["fit", "probe.capacity"] == probe.capacity
    assert rows["fit", "probe.data.throughput"] == 39.5 and rows["fit", "probe.feasible"] is True
    assert rows["fit", "probe.data.peak_bytes"] == 123_456_789
    assert rows["fit", "model.hidden_channels"] == 16  # what it tried, beside what it measured
    assert ("fit", "probe.measurements") not in rows  # kept in the record, not a variable
    assert rows["tune", "train.epochs_run"] == 4 and rows["tune", "result.val_pearson"] == 0.42
    assert rows["tune", "result.val_loss_by_epoch"] == [0.9, None, 0.7, 0.61]
    for search, columns in TRIAL_COLUMNS.items():  # every column the page shows is written
        assert all((search.value, c.variable) in rows for c in columns), search


def test_the_trial_tables_columns_are_the_figures_the_records_mark_shown():
    fit = [c.variable for c in TRIAL_COLUMNS[Search.FIT]]
    assert fit[:2] == ["probe.capacity", "probe.max_batch_size"]  # in their rank
    assert "probe.data.cycle_minutes" in fit and "probe.feasible" in fit
    assert [c.variable for c in TRIAL_COLUMNS[Search.TUNE]] == [
        "train.epochs_run",
        "result.val_loss",
        "result.val_rmse",
        "result.val_pearson",
    ]
    kinds = {c.variable: c.kind for columns in TRIAL_COLUMNS.values() for c in columns}
    assert kinds["probe.peak_bytes"] == "bytes" and kinds["result.val_loss"] == "loss"


def test_a_record_kept_before_records_carried_reports_still_reads():
    """A search resumed from an earlier version's state: its records carry their figures among
    their variables, and write the same rows as before."""
    old = {
        "stage": "validation",
        "search": "tune",
        "trial_id": "t9",
        "status": "stopped_early",
        "variables": {"model.num_layers": 2, "result.val_loss": 0.8, "train.epochs_run": 1},
    }
    record = TrialRecord.model_validate_json(json.dumps(old))
    assert record.trained is None
    assert record.all_variables() == old["variables"]


def test_a_diverged_trial_saved_with_its_search_reads_back(tmp_path):
    """A search's state is saved as JSON, where a diverged loss is null: it reads back as NaN,
    and resuming the search loses none of its records."""
    diverged = _record(trained=TrainedReport(last=EpochReport(epoch=2, val_loss=math.nan)))
    folder = JobFolder(tmp_path / "job")
    folder.save_search(
        Stage.VALIDATION, Search.TUNE, {"records": [diverged.model_dump(mode="json")]}
    )
    saved = folder.saved_search(Stage.VALIDATION, Search.TUNE)["records"][0]
    read = TrialRecord.model_validate(saved)
    assert math.isnan(read.trained.last.val_loss) and read.trained.last.epoch == 2
