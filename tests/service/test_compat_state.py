"""A service's state written by the version of 2026-12-05 (``tests/data/state-20261205``: its
``jobs.sqlite``, a finished job's folder with its record, and two versions of a saved profile,
made with that version's own code) reads as it did: the job, its result, progress, trials and
profiles through the API, its searches through the tuner, and the same index rebuilt from the
files when the SQLite file is lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr

from model import load_train_config
from service.settings import Settings
from stagetune_api import Best, JobFiles, Search, Stage
from tests.service.live_server import app_in_thread, call, free_port
from tests.service.recording_ray import RecordingRay
from tuner import FitOutcome, TuneOutcome, read_trials_csv

STATE = Path(__file__).resolve().parents[1] / "data" / "state-20261205"
JOB = "20261205-current"


@pytest.fixture
def state(tmp_path) -> Path:
    copy = tmp_path / "state"
    shutil.copytree(STATE, copy)
    return copy


def serve(state: Path):
    settings = Settings(state_dir=state, api_token=SecretStr("t0ken"), port=free_port())
    return app_in_thread(settings, RecordingRay())


def get(url: str, path: str):
    return call(url, "GET", path, token="t0ken")


@pytest.mark.parametrize("index", ["kept", "lost"])
def test_the_service_reads_the_job_and_the_profiles_it_wrote(state, index):
    if index == "lost":  # rebuilt from the job's record and the profile files
        (state / "jobs.sqlite").unlink()
    with serve(state) as url:
        status, job = get(url, f"/jobs/{JOB}")
        assert status == 200 and job["state"] == "succeeded", job
        assert set(job["progress"]) == {"prototyping", "production"}
        fit = job["progress"]["prototyping"]["fit"]
        assert fit["done"] == 3 and isinstance(fit["best"], str)  # in words, then
        status, result = get(url, f"/jobs/{JOB}/result")
        assert status == 200 and set(result["stages"]) == {"prototyping", "production"}
        status, trials = get(url, f"/jobs/{JOB}/trials")
        assert status == 200 and {t["stage"] for t in trials} == {"prototyping", "production"}
        status, yaml_text = call(url, "GET", f"/jobs/{JOB}/profiles/production", token="t0ken")
        assert status == 200 and "hidden_channels" in yaml_text
        status, profile = get(url, "/profiles/fixture")
        assert status == 200 and profile["version"] == 2 and profile["versions"] == 2, profile
        assert profile["config"]["train"]["epochs"] == 2
        status, first = get(url, "/profiles/fixture?version=1")
        assert status == 200 and first["job_id"] == JOB and first["stage"] == "prototyping"


def test_the_tuner_reads_the_folder_it_wrote(state):
    files = JobFiles(state / "jobs" / JOB)
    result = files.read_result()
    progress = files.read_progress()
    assert result is not None and progress is not None
    production = result.stages[Stage.PRODUCTION]
    assert production.feasible and production.batching is not None
    tune = progress.stages[Stage.PRODUCTION][Search.TUNE]
    assert tune.done == 2 and not isinstance(tune.best, Best)
    for stage in ("prototyping", "production"):
        fit = FitOutcome.from_json(json.loads(files.search(Stage(stage), Search.FIT).read_text()))
        assert any(c.probe is not None and c.probe.fits for c in fit.candidates)
        saved = json.loads(files.search(Stage(stage), Search.TUNE).read_text())
        assert TuneOutcome.from_json(saved).best is not None
        profile = files.path / files.profile(Stage(stage))
        config = load_train_config(profile=profile)
        assert config.digest() == result.stages[Stage(stage)].config_hash
    rows = read_trials_csv(files.trials_csv)
    assert {r["search"] for r in rows} == {"fit", "tune"}
