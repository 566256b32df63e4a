"""A job folder written before the typed contract (``tests/data/old-job``: the quick preset's
prototyping and production stages, made by the release before it) still reads, and resumes:
its finished searches are not run again, and its answers stay the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model import load_train_config
from stagetune_api import JobResult, JobSpec, Stage
from tuner import FitOutcome, ProbeResult, TuneOutcome, optimize, read_trials_csv

OLD = Path(__file__).resolve().parents[1] / "data" / "old-job"


def test_an_old_result_reads_as_the_contract_says():
    result = JobResult.model_validate_json((OLD / "result.json").read_text())
    assert set(result.stages) == {Stage.PROTOTYPING, Stage.PRODUCTION}
    answer = result.stages[Stage.PRODUCTION]
    assert answer.feasible and answer.batch_size is not None
    assert answer.budget is None  # not kept then: the page falls back to the trials' own


def test_old_searches_trials_and_profiles_read():
    fit = FitOutcome.from_json(json.loads((OLD / "searches" / "prototyping-fit.json").read_text()))
    probed = [c.probe for c in fit.candidates if c.probe is not None]
    assert probed and all(isinstance(p, ProbeResult) for p in probed)
    # a measurement saved with its median alone keeps that median
    for m in probed[0].measurements:
        if m.step_seconds:
            assert m.median_seconds is not None
    saved = json.loads((OLD / "searches" / "prototyping-tune.json").read_text())
    tune = TuneOutcome.from_json(saved)
    assert tune.best is not None and tune.records
    rows = read_trials_csv(OLD / "trials.csv")
    assert {r["stage"] for r in rows} == {"prototyping", "production"}
    for stage in ("prototyping", "production"):
        config = load_train_config(profile=OLD / "profiles" / f"{stage}.yaml")
        assert config.train.batch_size >= 1


@pytest.fixture
def old_job(tmp_path) -> JobSpec:
    """The old folder where its job looks for it: storage/old-job."""
    folder = tmp_path / "jobs" / "old-job"
    shutil.copytree(OLD, folder)
    stored = json.loads((folder / "job.json").read_text())
    stored["storage"] = str(tmp_path / "jobs")
    (folder / "job.json").write_text(json.dumps(stored))
    return JobSpec.model_validate(stored)


@pytest.mark.slow
def test_an_old_job_resumes_without_running_its_searches_again(old_job):
    before = JobResult.model_validate_json((old_job.job_dir / "result.json").read_text())
    result = optimize(old_job)
    log = (old_job.job_dir / "job.log").read_text()
    for search in ("prototyping-fit", "prototyping-tune", "production-fit", "production-tune"):
        assert f"{search}: finished before, not run again" in log
    assert not any((old_job.job_dir / "ray").iterdir())  # no experiment was started
    for stage, answer in result.stages.items():
        old = before.stages[stage]
        assert (answer.model, answer.batch_size) == (old.model, old.batch_size)
        # the same optimizer; a key added since appears at its default
        assert {k: answer.optimizer[k] for k in old.optimizer} == old.optimizer
        assert {k: answer.optimizer[k] for k in set(answer.optimizer) - set(old.optimizer)} == {
            "hash_to_debuglog": True
        }
        assert answer.budget is not None
    rows = read_trials_csv(old_job.job_dir / "trials.csv")
    assert len(rows) == len(read_trials_csv(OLD / "trials.csv"))


@pytest.mark.slow
def test_an_experiment_an_earlier_version_left_unfinished_is_run_afresh(old_job):
    """An interrupted search whose experiment cannot be restored (pickled by modules that have
    moved since) is set aside, and the job still answers."""
    folder = old_job.job_dir
    (folder / "searches" / "production-fit.json").unlink()
    (folder / "searches" / "production-tune.json").unlink()
    experiment = folder / "ray" / "production-fit"
    experiment.mkdir(parents=True)
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (experiment / "tuner.pkl").write_bytes(b"pickled by modules that are gone")
    result = optimize(old_job)
    assert result.stages[Stage.PRODUCTION].feasible
    kept = [p.name for p in (folder / "ray").iterdir() if ".unrestorable-" in p.name]
    assert kept and kept[0].startswith("production-fit")
    assert "the search starts afresh" in (folder / "job.log").read_text()
