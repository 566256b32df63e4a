"""Saved profiles, configuration checks and what the results page reads, over HTTP, against the
app under uvicorn on loopback with a real SQLite file (Ray's job API is the in-memory double: no
job runs here)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from model import load_train_config
from service.settings import Settings
from tests.service.live_server import app_in_thread, free_port
from tests.service.recording_ray import RecordingRay

TOKEN = "profiles-token"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(
        state_dir=tmp_path_factory.mktemp("profiles"), api_token=TOKEN, port=free_port()
    )


@pytest.fixture(scope="module")
def ray():
    return RecordingRay()


@pytest.fixture(scope="module")
def base(settings, ray):
    with app_in_thread(settings, ray) as url:
        yield url


def call(base: str, method: str, path: str, body: Any = None, token: str | None = TOKEN):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text, kind = answer.status, answer.read().decode(), answer.headers
    except urllib.error.HTTPError as error:
        status, text, kind = error.code, error.read().decode(), error.headers
    return status, json.loads(text) if "json" in kind.get("content-type", "") else text, kind


def test_a_profile_is_checked_saved_versioned_and_downloadable(base, tmp_path):
    edited = {"model": {"hidden_channels": 24}, "optimizer": {"lr": 0.002}, "train": {"epochs": 1}}
    status, checked, _ = call(base, "POST", "/configs/check", {"config": edited})
    assert status == 200 and checked["valid"]
    assert checked["config"]["optimizer"]["lr"] == 0.002  # the whole configuration, composed
    assert checked["config"]["scheduler"]["name"]

    given = {"config": edited, "stage": "validation"}
    status, first, _ = call(base, "PUT", "/profiles/mine", given)
    assert status == 201 and first["version"] == 1 and first["versions"] == 1
    assert first["config_hash"] == checked["config_hash"]
    again = call(base, "PUT", "/profiles/mine", {"config": edited})
    assert again[0] == 200 and again[1]["version"] == 1  # the same configuration: no new version
    status, second, _ = call(
        base, "PUT", "/profiles/mine", {"config": {**edited, "optimizer": {"lr": 0.001}}}
    )
    assert status == 201 and second["version"] == 2

    assert call(base, "GET", "/profiles/mine")[1]["version"] == 2
    status, text, headers = call(base, "GET", "/profiles/mine?version=1&format=yaml")
    assert status == 200 and headers["content-type"].startswith("application/yaml")
    assert 'filename="mine-v1.yaml"' in headers["content-disposition"]
    saved = tmp_path / "mine-v1.yaml"
    saved.write_text(text)
    assert yaml.safe_load(text)["meta"] == {
        "description": "stagetune profile mine",
        "profile": "mine",
        "version": 1,
        "stage": "validation",
        "job_id": None,
        "config_hash": first["config_hash"],
    }
    config = load_train_config(profile=saved)  # what `stagetune train --profile` does
    assert config.optimizer.hyperparameters["lr"] == 0.002
    assert config.digest() == first["config_hash"]

    listed = call(base, "GET", "/profiles")[1]["profiles"]
    assert [(p["name"], p["version"], p["versions"]) for p in listed] == [("mine", 2, 2)]
    assert "stagetune train --profile mine-v2.yaml" in listed[0]["command"]


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr", "must be a number"),
        ({"optimizer": {"lrr": 0.1}}, "optimizer.lrr", "did you mean 'lr'"),
        ({"model": {"hidden_channels": -4}}, "model.hidden_channels", "greater than 0"),
        ({"train": "fast"}, "train", "valid dictionary"),
        ({"colour": 1}, "colour", "unknown key"),
    ],
)
def test_an_invalid_configuration_is_refused_key_by_key_and_never_saved(base, config, key, message):
    for method, path in (("POST", "/configs/check"), ("PUT", "/profiles/refused")):
        status, answer, _ = call(base, method, path, {"config": config})
        assert status == 422, answer
        problem = answer["problems"][0]
        assert problem["key"] == key and message in problem["message"], answer
    assert call(base, "GET", "/profiles/refused")[0] == 404


def test_names_versions_and_the_token_are_checked(base):
    assert call(base, "PUT", "/profiles/-bad", {"config": {}})[0] == 422
    assert call(base, "PUT", "/profiles/" + "x" * 65, {"config": {}})[0] == 422
    assert call(base, "GET", "/profiles/nothere")[0] == 404
    assert call(base, "GET", "/profiles/nothere?format=xml")[0] == 422
    call(base, "PUT", "/profiles/one", {"config": {}})
    assert call(base, "GET", "/profiles/one?version=9")[0] == 404
    assert call(base, "GET", "/profiles", token=None)[0] == 401
    assert call(base, "PUT", "/profiles/x", {"config": {}}, token="wrong")[0] == 401
    status, page, _ = call(base, "GET", "/ui/", token=None)  # the page itself holds no data
    assert status == 200 and "<title>stagetune</title>" in page
    assert call(base, "GET", "/ui/../main.py", token=None)[0] == 404


def test_choices_name_what_a_new_job_may_use(base):
    status, choices, _ = call(base, "GET", "/choices")
    assert status == 200
    assert {"quick", "default"} <= set(choices["presets"])
    assert choices["presets"]["quick"]["fit_trials"] > 0
    assert choices["stages"] == ["prototyping", "validation", "production"]
    assert "adamw" in choices["optimizers"] and "cosine" in choices["schedulers"]
    # the keys whose values are a fixed set, each value one a profile may take
    fixed = choices["config_choices"]
    assert fixed["model.reduce_op"] == ["sum", "mean"] and None in fixed["model.vecnorm_type"]
    assert fixed["train.precision"][0] == "auto"
    for key, values in fixed.items():
        section, name = key.split(".", 1)
        for value in values:
            status, checked, _ = call(
                base, "POST", "/configs/check", {"config": {section: {name: value}}}
            )
            assert status == 200, (key, value, checked)


def test_a_diverged_loss_in_trials_csv_is_null_in_json(base, settings):
    from stagetune_api import TrialRecord
    from tuner import JobFolder

    status, job, _ = call(base, "POST", "/optimize", {"preset": "quick", "tune": False})
    assert status == 202
    diverged = {"result.val_loss": float("nan"), "result.val_loss_by_epoch": [0.9, float("inf")]}
    records = [
        TrialRecord(
            stage="prototyping",
            search="tune",
            trial_id="t1",
            status="stopped_early",
            variables=diverged,
        )
    ]
    # what a job whose loss diverged writes in its folder
    JobFolder(settings.jobs_dir / job["job_id"]).write_trials(records)
    status, rows, _ = call(base, "GET", f"/jobs/{job['job_id']}/trials")
    assert status == 200
    values = {r["variable"]: r["value"] for r in rows}
    assert values == {"result.val_loss": None, "result.val_loss_by_epoch": [0.9, None]}


def test_a_saved_profile_trains_as_a_job_on_ray(base, settings, ray):
    call(base, "PUT", "/profiles/to-train", {"config": {"train": {"epochs": 1}}})
    status, job, _ = call(base, "POST", "/profiles/to-train/train")
    assert status == 202 and job["kind"] == "train", job
    assert job["options"] == {"profile": "to-train", "version": 1}
    profile = settings.jobs_dir / job["job_id"] / "profile.yaml"
    assert load_train_config(profile=profile).train.epochs == 1  # what the Ray job trains
    listed = call(base, "GET", f"/jobs/{job['job_id']}")[1]
    assert listed["kind"] == "train" and listed["state"] in ("queued", "running")
    assert call(base, "GET", f"/jobs/{job['job_id']}/result")[0] == 409  # no report yet
    for other in call(base, "GET", "/jobs?state=running")[1]["jobs"]:  # free the one slot
        call(base, "DELETE", f"/jobs/{other['job_id']}")
    deadline = time.monotonic() + 10
    while not any(e.startswith("stagetune train") for e, _ in ray.entrypoints):
        assert time.monotonic() < deadline, ray.entrypoints
        time.sleep(0.05)
    entrypoint, gpus = next((e, g) for e, g in ray.entrypoints if e.startswith("stagetune train"))
    assert f"--profile {profile}" in entrypoint
    assert f"--report {profile.parent / 'report.json'}" in entrypoint and ">" not in entrypoint
    assert gpus == 1.0  # the cluster has GPUs: the run trains on a node with one

    assert call(base, "POST", "/profiles/to-train/train?version=7")[0] == 404
    call(base, "PUT", "/profiles/elsewhere", {"config": {"data": {"source": "/etc"}}})
    status, refused, _ = call(base, "POST", "/profiles/elsewhere/train")
    assert status == 422 and "data.source: /etc is outside the data roots" in refused["detail"]
    call(base, "PUT", "/profiles/labels", {"config": {"data": {"labels": "/etc/passwd"}}})
    status, refused, _ = call(base, "POST", "/profiles/labels/train")
    assert status == 422 and "data.labels: /etc/passwd is outside" in refused["detail"]
