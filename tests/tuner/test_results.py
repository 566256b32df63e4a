"""The files people read: ``trials.csv`` (typed, one row per variable), ``trials-wide.csv`` (one
row per trial) and ``audit.md``, written from the trial records of a real job
(``tests/data/old-job``) by the job folder's writers."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from stagetune_api import JobResult, TrialRecord
from tuner import read_trials_csv
from tuner._folder import JobFolder

OLD = Path(__file__).resolve().parents[1] / "data" / "old-job"


def records_of(rows: list[dict]) -> list[TrialRecord]:
    """The trial records behind typed ``trials.csv`` rows, in their order."""
    records: dict[tuple[str, str, str], dict] = {}
    for row in rows:
        key = (row["stage"], row["search"], row["trial_id"])
        record = records.setdefault(
            key,
            {
                "stage": row["stage"],
                "search": row["search"],
                "trial_id": row["trial_id"],
                "status": row["status"],
                "node_id": row["node_id"] or None,
                "retries": row["retries"],
                "seconds": row["seconds"],
                "started": row["started"],
                "variables": {},
            },
        )
        record["variables"][row["variable"]] = row["value"]
    return [TrialRecord.model_validate(r) for r in records.values()]


@pytest.fixture
def written(tmp_path) -> tuple[JobFolder, list[TrialRecord], JobResult]:
    rows = read_trials_csv(OLD / "trials.csv")
    records = records_of(rows)
    result = JobResult.model_validate_json((OLD / "result.json").read_text())
    folder = JobFolder(tmp_path / "job")
    folder.write_trials(records)
    folder.write_audit(result, records)
    return folder, records, result


def test_trials_csv_reads_back_as_it_was_written(written):
    folder, _, _ = written
    assert read_trials_csv(folder.trials_csv) == read_trials_csv(OLD / "trials.csv")


def test_the_wide_form_has_one_row_per_trial_and_one_column_per_variable(written):
    folder, records, _ = written
    with folder.trials_wide_csv.open(newline="") as f:
        wide = list(csv.DictReader(f))
    assert len(wide) == len(records) == len({r.trial_id for r in records})
    variables = sorted({name for r in records for name in r.variables})
    assert list(wide[0])[8:] == variables  # after stage ... started
    long = read_trials_csv(folder.trials_csv)
    for row in long:  # every value of the long form, in its trial's row and variable's column
        trial = next(w for w in wide if w["trial_id"] == row["trial_id"])
        value = row["value"]
        expected = (
            "" if value is None else json.dumps(value) if row["type"] == "json" else str(value)
        )
        assert trial[row["variable"]] == expected, (row["trial_id"], row["variable"])
    fit = next(w for w in wide if w["search"] == "fit")
    assert fit["probe.capacity"].isdigit() and fit["result.val_loss"] == ""  # not a tune trial


def test_the_audit_names_each_probed_model_and_rounds_its_figures(written):
    folder, records, result = written
    audit = folder.audit_md.read_text()
    fit_rows = [line for line in audit.splitlines() if re.match(r"\| [0-9a-f]{8} \| probed ", line)]
    assert len(fit_rows) == sum(r.search.value == "fit" for r in records)
    for record in (r for r in records if r.search.value == "fit"):
        v = record.variables
        row = next(line for line in fit_rows if line.startswith(f"| {record.trial_id} "))
        layers = v["model.num_layers"]
        model = f"{v['model.hidden_channels']} channels x {layers} layer{'s' * (layers != 1)}"
        assert model in row and f"{v['probe.capacity']:,}" in row
        assert f"{round(v['probe.throughput']):,}" in row or f"{v['probe.throughput']:.3g}" in row
        assert " MiB" in row and str(v["probe.peak_bytes"]) not in row  # human-readable size
    production = result.stages[next(s for s in result.stages if s.value == "production")]
    assert f"({production.probe.capacity:,} parameters)" in audit
    assert "32 channels x 3 layers, 2 heads, 8 RBF, cutoff 5 Å" in audit
    assert "225.28 MiB of 230.40 MiB" in audit  # the peak against the limit, not raw bytes
    # no figure with more digits than a person reads (hashes, node ids and sizes aside)
    prose = re.sub(r"`[0-9a-f]{64}`|\| [0-9a-f]{8} \||[\d.]+ [KMG]iB", "", audit)
    for number in re.findall(r"\d+\.\d+", prose):
        assert len(number.replace(".", "").lstrip("0")) <= 4, number


def test_the_wide_form_is_shared_with_the_other_files(written, tmp_path):
    folder, _, _ = written
    folder.copy_to(tmp_path / "out")
    assert (tmp_path / "out" / "trials-wide.csv").read_text() == folder.trials_wide_csv.read_text()


@pytest.mark.parametrize(
    ("policy", "counted"), [("largest_capacity", True), ("time_bound_throughput", False)]
)
def test_a_pruned_model_of_an_earlier_job_is_counted_by_its_policys_bound(
    tmp_path, policy, counted
):
    """A job that did not record ``pruned.capacity``: where the stage's policy bounds a score by
    the parameter count, the bound it pruned by is the model's count (what the page plots it
    at); a bound of throughput counts nothing."""
    record = TrialRecord(
        stage="production",
        search="fit",
        trial_id="pruned-x",
        status="pruned",
        variables={"stage.policy": policy, "pruned.bound": 52_000.0, "pruned.best": 60_000.0},
    )
    JobFolder(tmp_path).write_trials([record])
    rows = read_trials_csv(tmp_path / "trials.csv")
    capacity = [r["value"] for r in rows if r["variable"] == "pruned.capacity"]
    assert capacity == ([52_000.0] if counted else [])
