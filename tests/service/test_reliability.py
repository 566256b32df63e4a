"""What a careful attacker tried against the service, each a request to a real server on loopback
and a real SQLite file: text that UTF-8 cannot hold, paths outside the data roots, absurd numbers,
a reused Idempotency-Key, a body too large, Ray gone, a corrupt index, a full disk. Ray's job API
is the in-memory seam here (tests/service/test_api.py stops and kills a real head of the service's
own; tests/service/test_ray_clusters.py points it at an address where nothing answers, and at a
real cluster it does not own, which loses an answer, dies and comes back)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
from pydantic import SecretStr

from service.settings import Settings
from service.store import JobStore
from tests.service.live_server import QUICK, TOKEN, app_in_thread, call, free_port, until
from tests.service.recording_ray import RecordingRay


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("roots") / "pdbbind"
    root.mkdir()
    return root


def settings(state, data_root, **more) -> Settings:
    return Settings(
        state_dir=state,
        api_token=SecretStr(TOKEN),
        port=free_port(),
        data_roots=[data_root],
        **more,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory, data_root):
    ray = RecordingRay()
    with app_in_thread(settings(tmp_path_factory.mktemp("state"), data_root), ray) as url:
        yield url, ray


def post(url: str, raw: str, path: str = "/optimize", **headers: str):
    return call(url, "POST", path, raw=raw.encode(), headers=headers)


def keys(answer) -> set[str]:
    return {p["key"] for p in answer["problems"]}


# Each request the attacker sent (JSON as sent: "\\ud800" is a lone surrogate), and the key the
# refusal must name.
REFUSED = [
    ('"sample": "\\ud800"', "sample"),
    ('"preset": "quick\\ud800"', "preset"),
    ('"data": "quick\\u0000"', "data"),
    ('"overrides": ["optimizer=\\ud800"]', "overrides[0]"),
    ('"space": {"prototyping": {"model.hidden_channels": [1e999]}}', "space.prototyping"),
    ('"preset": "../../../../etc/x"', "preset"),
    ('"preset": "nonexistent"', "preset"),
    ('"sample": "/etc/ssl"', "sample"),
    ('"sample": "~/.ray"', "sample"),
    ('"overrides": ["data.labels=/etc/passwd"]', "overrides[0]"),
    ('"overrides": ["data.cache_dir=/tmp/elsewhere"]', "overrides[0]"),
    ('"overrides": ["train.output_dir=/root"]', "overrides[0]"),
    ('"fit_trials": 9223372036854775808', "fit_trials"),
    ('"max_epochs": 1e30', "max_epochs"),
    ('"max_concurrent": 100000000', "max_concurrent"),
    ('"max_atoms": 9223372036854775807', "max_atoms"),
    ('"seed": 18446744073709551616', "seed"),
    ('"reduction_factor": Infinity', "reduction_factor"),
    ('"gpus_per_trial": Infinity', "gpus_per_trial"),
    ('"memory_budget": "1KiB"', "memory_budget"),
    ('"overrides": ["data.labels=\'/etc/passwd\'"]', "overrides[0]"),
    ('"overrides": ["optimizer.export_json=/etc/stagetune.json"]', "overrides[0]"),
    ('"overrides": ["data={\\"labels\\": \\"/etc/passwd\\"}"]', "data"),
    ('"overrides": ["optimizer.lr=.nan"]', "overrides[0]"),
    ('"overrides": ["optimizer.lr=.inf"]', "overrides[0]"),
    ('"overrides": ["optimizer.lr=1e309"]', "overrides[0]"),
    ('"overrides": ["optimizer.lr=' + "9" * 4000 + '"]', "overrides[0]"),
    ('"overrides": ["optimizer.lr=0.01", "data.seed=' + "9" * 30 + '"]', "overrides[1]"),
    ('"overrides": ["optimizer.betas=[0.9, -.Inf]"]', "overrides[0]"),
    # YAML reads these as text, i.e. relative paths: the parsed value decides, not the spelling
    ('"overrides": ["data.labels=None"]', "overrides[0]"),
    ('"overrides": ["data.cache_dir=NONE"]', "overrides[0]"),
    ('"overrides": ["data.source=Synthetic"]', "overrides[0]"),
    ('"overrides": ["data.labels=synthetic"]', "overrides[0]"),
    ('"overrides": ["data.labels=\'null\'"]', "overrides[0]"),
    ('"overrides": ["train.output_dir=\\"TRUE\\""]', "overrides[0]"),
]


@pytest.mark.parametrize(("field", "named"), REFUSED, ids=[f for f, _ in REFUSED])
def test_a_refused_request_names_its_field_and_leaves_no_job(service, field, named):
    url, _ = service
    before = call(url, "GET", "/jobs")[1]["total"]
    status, answer = post(url, "{" + f'"preset": "quick", "tune": false, {field}' + "}")
    assert status == 422, answer
    assert any(k.startswith(named) for k in keys(answer)), answer
    assert "/site-packages/" not in answer["detail"] and "configs/presets" not in answer["detail"]
    assert call(url, "GET", "/jobs")[1]["total"] == before


def test_a_path_set_by_overriding_its_whole_section_is_checked(service):
    """``train={...}`` replaces the section: the composed configuration is what is checked."""
    url, _ = service
    whole = call(url, "POST", "/configs/check", {"config": {}})[1]["config"]["train"]
    body = {**QUICK, "overrides": ["train=" + json.dumps({**whole, "output_dir": "/root/x"})]}
    status, answer = call(url, "POST", "/optimize", body)
    assert status == 422 and keys(answer) == {"train.output_dir"}, answer


def test_a_profile_that_writes_outside_the_data_roots_is_not_trained(service):
    url, _ = service
    config = {"optimizer": {"export_json": "/etc/exported.json"}}
    assert call(url, "PUT", "/profiles/exports", {"config": config})[0] == 201
    status, answer = call(url, "POST", "/profiles/exports/train")
    assert status == 422 and keys(answer) == {"optimizer.export_json"}, answer


def test_values_that_name_no_path_are_not_taken_for_paths(service):
    """null (any YAML spelling of it), a boolean and synthetic data name no path."""
    url, _ = service
    overrides = [
        "data.labels=null",
        "data.labels=NULL",
        "data.cache_dir=~",
        "data.source=synthetic",
    ]
    status, job = call(url, "POST", "/optimize", {**QUICK, "overrides": overrides})
    assert status == 202, job


def test_a_sample_inside_the_data_roots_is_accepted(service, data_root):
    url, _ = service
    status, job = call(url, "POST", "/optimize", {**QUICK, "sample": str(data_root / "1abc")})
    assert status == 202, job


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/configs/check", '{"config": {"optimizer": {"lr": 1e999}}}'),
        ("/configs/check", '{"config": {"optimizer": {"lr": Infinity}}}'),
        ("/configs/check", '{"config": {"optimizer": {"lr": NaN}}}'),
        ("/configs/check", '{"config": {"data": {"source": "\\ud800"}}}'),
    ],
)
def test_a_configuration_that_json_cannot_hold_is_refused(service, path, raw):
    status, answer = post(service[0], raw, path)
    assert status == 422 and all(k.startswith("config.") for k in keys(answer)), answer


def test_a_profile_description_with_a_lone_surrogate_is_refused(service):
    status, answer = call(
        service[0], "PUT", "/profiles/p", raw=b'{"config": {}, "description": "\\ud800"}'
    )
    assert status == 422 and keys(answer) == {"description"}, answer


def test_a_stored_record_that_predates_the_checks_never_fails_a_read(tmp_path, data_root):
    """A row written by an older service with a lone surrogate in its options is shown (as
    U+FFFD), listed, and cancelled; the page still loads."""
    store = JobStore(tmp_path / "jobs.sqlite")
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO jobs (id, state, options, created) VALUES (?, ?, ?, ?)",
            ("old", "queued", '{"sample": "\\ud800", "preset": "quick"}', time.time()),
        )
    with app_in_thread(settings(tmp_path, data_root, max_running_jobs=1), RecordingRay()) as url:
        status, listed = call(url, "GET", "/jobs")
        assert status == 200 and listed["total"] == 1, listed
        assert call(url, "GET", "/jobs/old")[1]["options"]["sample"] == "\ufffd"
        assert call(url, "DELETE", "/jobs/old")[0] == 200
        assert call(url, "GET", "/", token=None)[0] == 200


def test_a_reused_idempotency_key_with_other_options_is_a_conflict(service):
    url, _ = service
    first = call(url, "POST", "/optimize", QUICK, headers={"Idempotency-Key": "k-1"})
    again = call(url, "POST", "/optimize", QUICK, headers={"Idempotency-Key": "k-1"})
    other = call(url, "POST", "/optimize", {**QUICK, "seed": 7}, headers={"Idempotency-Key": "k-1"})
    assert first[0] == 202 and again[0] == 200 and again[1]["job_id"] == first[1]["job_id"]
    assert other[0] == 409 and first[1]["job_id"] in other[1]["detail"], other


def test_a_body_over_the_limit_is_refused_unread_while_healthz_answers(service):
    """A 2 MB body is refused on its declared length, before a byte of it is sent."""
    url, _ = service
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"POST /optimize HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}"
            "\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n".encode()
        )
        answer = conn.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    started = time.perf_counter()
    assert call(url, "GET", "/healthz", token=None)[0] == 200
    assert time.perf_counter() - started < 1.0


@pytest.mark.slow
def test_ray_gone_is_reported_jobs_wait_and_nothing_is_lost(tmp_path, data_root):
    ray = RecordingRay()
    with app_in_thread(settings(tmp_path, data_root, max_running_jobs=2), ray) as url:
        status, running = call(url, "POST", "/optimize", QUICK)
        assert status == 202
        job = f"/jobs/{running['job_id']}"
        assert until(lambda: call(url, "GET", job)[1]["state"] == "running")
        ray.down = True
        assert until(lambda: call(url, "GET", "/healthz", token=None)[0] == 503)
        status, health = call(url, "GET", "/healthz", token=None)
        assert health["status"] == "unavailable" and "does not answer" in health["ray"]

        status, answer = call(url, "DELETE", job)
        assert status == 503 and "does not answer" in answer["detail"], answer
        assert call(url, "GET", job)[1]["state"] == "running"
        status, waiting = call(url, "POST", "/optimize", {**QUICK, "seed": 1})
        assert status == 202 and waiting["state"] == "queued", waiting  # the last reading serves

        time.sleep(2)  # the follower keeps trying: the job waits, it is not failed
        assert call(url, "GET", f"/jobs/{waiting['job_id']}")[1]["state"] == "queued"
        ray.down = False
        assert until(lambda: call(url, "GET", "/healthz", token=None)[0] == 200)
        queued = f"/jobs/{waiting['job_id']}"
        assert until(lambda: call(url, "GET", queued)[1]["state"] == "running")


@pytest.mark.slow
def test_a_refused_submission_is_tried_again_then_fails_with_rays_message(
    tmp_path, data_root, monkeypatch
):
    monkeypatch.setattr("service.follower.SUBMIT_TRIES", 2)
    ray = RecordingRay()
    with app_in_thread(settings(tmp_path, data_root, max_running_jobs=5), ray) as url:
        ray.refusals = 1
        _, retried = call(url, "POST", "/optimize", QUICK)
        assert until(
            lambda: call(url, "GET", f"/jobs/{retried['job_id']}")[1]["state"] == "running",
            timeout=15,
        )
        ray.refusals = 2
        _, failed = call(url, "POST", "/optimize", {**QUICK, "seed": 2})
        assert until(
            lambda: call(url, "GET", f"/jobs/{failed['job_id']}")[1]["state"] == "failed",
            timeout=15,
        )
        error = call(url, "GET", f"/jobs/{failed['job_id']}")[1]["error"]
        assert "refused its submission 2 times" in error and "No available agent" in error


@pytest.mark.parametrize("damage", ["missing", "empty", "garbage"])
def test_a_lost_or_corrupt_index_is_rebuilt_from_the_job_folders(
    tmp_path, data_root, damage, caplog
):
    ray = RecordingRay()
    with app_in_thread(settings(tmp_path, data_root, max_running_jobs=1), ray) as url:
        made = [call(url, "POST", "/optimize", {**QUICK, "seed": s})[1] for s in range(3)]
        assert until(
            lambda: call(url, "GET", f"/jobs/{made[0]['job_id']}")[1]["state"] == "running"
        )
        call(url, "DELETE", f"/jobs/{made[2]['job_id']}")
        before = {j["job_id"]: j["state"] for j in call(url, "GET", "/jobs")[1]["jobs"]}
    index = tmp_path / "jobs.sqlite"
    for part in tmp_path.glob("jobs.sqlite*"):
        part.unlink()
    if damage == "empty":
        index.write_bytes(b"")
    elif damage == "garbage":
        index.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 32)
    with app_in_thread(settings(tmp_path, data_root, max_running_jobs=1), ray) as url:
        after = {j["job_id"]: j["state"] for j in call(url, "GET", "/jobs")[1]["jobs"]}
    assert after == before  # running, queued and cancelled, as they were
    assert "indexed again from their folders" in caplog.text
    if damage == "garbage":
        assert len(list(tmp_path.glob("jobs.sqlite.corrupt-*"))) == 1
        assert "set aside" in caplog.text


def test_folders_no_version_wrote_or_a_half_made_job_never_stop_the_service(tmp_path, data_root):
    jobs = tmp_path / "jobs"
    for name, files in {
        "20260101-000001-aaaaaa": {"job-record.json": "null", "spec.json": "[]"},
        "20260101-000002-bbbbbb": {"profile.yaml": "just text"},
        "20260101-000003-cccccc": {"spec.json": json.dumps({**QUICK, "job_id": "x"})},
    }.items():
        (jobs / name).mkdir(parents=True)
        for file, text in files.items():
            (jobs / name / file).write_text(text)
    with app_in_thread(settings(tmp_path, data_root), RecordingRay()) as url:
        listed = {j["job_id"]: j for j in call(url, "GET", "/jobs")[1]["jobs"]}
    assert set(listed) == {"20260101-000003-cccccc"}  # the others hold no job
    half = listed["20260101-000003-cccccc"]
    assert half["state"] == "failed" and "never started" in half["error"], half


def test_a_job_folder_from_before_records_reads_as_its_files_say(tmp_path, data_root):
    """A folder an older service wrote (spec.json and result.json, no job-record.json) is listed
    as succeeded after its index is lost, and gains its record."""
    folder = tmp_path / "jobs" / "20260101-120000-abcdef"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({**QUICK, "job_id": folder.name, "storage": "x"}))
    (folder / "result.json").write_text("{}")
    with app_in_thread(settings(tmp_path, data_root), RecordingRay()) as url:
        job = call(url, "GET", f"/jobs/{folder.name}")[1]
    assert job["state"] == "succeeded" and job["options"]["preset"] == "quick", job
    assert (folder / "job-record.json").is_file()


@pytest.mark.parametrize(
    ("seam", "code", "status"),
    [
        ("service.jobs.write_atomic", errno.ENOSPC, 507),  # the job's first file
        ("service.jobs.write_atomic", errno.EROFS, 503),
        ("service.records.write_atomic", errno.ENOSPC, 507),  # its record, beside its row
    ],
)
def test_a_full_or_read_only_disk_is_said_and_leaves_no_half_made_job(
    tmp_path, data_root, monkeypatch, seam, code, status
):
    with app_in_thread(settings(tmp_path, data_root), RecordingRay()) as url:
        before = call(url, "GET", "/jobs")[1]["total"]

        def fails(path, text):
            raise OSError(code, "simulated", str(path))

        monkeypatch.setattr(seam, fails)
        answered, answer = call(url, "POST", "/optimize", QUICK)
        assert answered == status and "state folder" in answer["detail"], answer
        assert call(url, "GET", "/jobs")[1]["total"] == before
        assert list((tmp_path / "jobs").iterdir()) == []


def laughs(levels: int) -> str:
    """The issue's override: each level an anchored list of nine aliases of the one before."""
    parts = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for before, name in zip("abcdefgh", "bcdefghi"[: levels - 1], strict=False):
        parts.append(f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]")
    return "optimizer.betas={" + ", ".join(parts) + "}"


def test_an_override_of_anchors_and_aliases_is_refused_at_once(service):
    """A "billion laughs" (9**8 items from a few hundred bytes) is refused before anything expands
    it, naming the override, while /healthz answers at once."""
    url, _ = service
    body = {**QUICK, "overrides": ["optimizer.lr=0.01", laughs(8)]}
    assert len(body["overrides"][1]) > 300
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(call(url, "POST", "/optimize", body)))
    started = time.perf_counter()
    thread.start()
    slowest = 0.0
    while thread.is_alive() and time.perf_counter() - started < 30:
        began = time.perf_counter()
        assert call(url, "GET", "/healthz", token=None)[0] == 200
        slowest = max(slowest, time.perf_counter() - began)
    thread.join()
    took = time.perf_counter() - started
    status, answer = answers[0]
    assert status == 422 and keys(answer) == {"overrides[1]"}, answer
    assert "anchors and aliases" in answer["detail"], answer
    assert took < 2 and slowest < 0.1, (took, slowest)


def every_route_answers(url: str) -> dict[str, int]:
    """The status of each route that reads or writes the job index; a 503 must be the JSON
    refusal shape with its reason, never a server error."""
    profile = {"config": {"train": {"epochs": time.time_ns() % 1000 + 1}}}  # a new version
    asked = {
        "POST /optimize": call(url, "POST", "/optimize", {**QUICK, "seed": time.time_ns() % 2**32}),
        "GET /jobs": call(url, "GET", "/jobs"),
        "GET /metrics": call(url, "GET", "/metrics"),
        "PUT /profiles/mine": call(url, "PUT", "/profiles/mine", profile),
        "GET /profiles": call(url, "GET", "/profiles"),
    }
    for route, (status, answer) in asked.items():
        assert status < 500 or (status == 503 and "detail" in answer), (route, status, answer)
    return {route: status for route, (status, _) in asked.items()}


def damage(index, how: str) -> None:
    """Damage the running service's index as an operator's mistake or a failing disk would."""
    with sqlite3.connect(index) as db:  # what the file holds is in the file, not the WAL
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if how == "truncated":
        index.write_bytes(b"")
    elif how == "deleted":
        for part in index.parent.glob("jobs.sqlite*"):
            part.unlink()
    else:  # 64 KiB of garbage over every page after the first (the tables)
        with index.open("r+b") as file:
            file.seek(4096)
            file.write(bytes(range(256)) * 256)


@pytest.mark.parametrize("how", ["truncated", "garbage", "deleted"])
def test_an_index_damaged_while_the_service_runs_is_repaired_with_no_job_lost(
    tmp_path, data_root, how
):
    with app_in_thread(settings(tmp_path, data_root, max_running_jobs=1), RecordingRay()) as url:
        made = [call(url, "POST", "/optimize", {**QUICK, "seed": s})[1] for s in range(3)]
        call(url, "DELETE", f"/jobs/{made[2]['job_id']}")
        assert call(url, "PUT", "/profiles/kept", {"config": {}})[0] == 201
        first = f"/jobs/{made[0]['job_id']}"
        assert until(lambda: call(url, "GET", first)[1]["state"] == "running")
        before = {j["job_id"]: j["state"] for j in call(url, "GET", "/jobs")[1]["jobs"]}

        damage(tmp_path / "jobs.sqlite", how)
        every_route_answers(url)  # 503 with its reason, or answered: never a 500
        assert until(lambda: set(every_route_answers(url).values()) <= {200, 201, 202})
        assert call(url, "GET", "/healthz", token=None)[0] == 200
        after = {j["job_id"]: j["state"] for j in call(url, "GET", "/jobs")[1]["jobs"]}
        assert {k: after[k] for k in before} == before  # running, queued, cancelled: as they were
        assert call(url, "GET", "/profiles/kept")[0] == 200


@contextlib.contextmanager
def read_only(folder):
    """``folder`` read-only for the service: a read-only bind mount over it when this is root
    (for whom permissions do not stop a write), else its permissions."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root here may not mount: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_read_only_state_folder_is_said_and_recovered_from_without_a_restart(tmp_path, data_root):
    state = tmp_path / "state"
    with app_in_thread(settings(state, data_root), RecordingRay()) as url:
        assert call(url, "PUT", "/profiles/mine", {"config": {}})[0] == 201
        made = call(url, "POST", "/optimize", QUICK)[1]
        with read_only(state):
            answered = every_route_answers(url)
            assert answered["PUT /profiles/mine"] == 503, answered
            assert answered["POST /optimize"] == 503, answered
            status, health = call(url, "GET", "/healthz", token=None)
            assert status == 503 and health["status"] == "degraded", health
            assert "state folder" in health["store"] or "jobs.sqlite" in health["store"], health
            time.sleep(2)  # the follower's checks meanwhile change nothing
        assert until(lambda: call(url, "GET", "/healthz", token=None)[0] == 200)
        answered = every_route_answers(url)
        assert set(answered.values()) <= {200, 201, 202}, answered
        assert call(url, "GET", f"/jobs/{made['job_id']}")[0] == 200


def test_a_request_past_its_validation_time_limit_is_refused_and_leaves_no_job(
    tmp_path, data_root, monkeypatch
):
    """A large request still validating when its time runs out is refused at once, naming the
    limit; its thread, which cannot be stopped, ends without writing the job."""
    valid = {**QUICK, "overrides": [f"optimizer.lr={0.001 + i * 1e-9:.9f}" for i in range(1000)]}
    with app_in_thread(settings(tmp_path, data_root), RecordingRay()) as url:
        monkeypatch.setattr("service.jobs.VALIDATION_SECONDS", 0.01)
        started = time.perf_counter()
        status, answer = call(url, "POST", "/optimize", valid)
        assert status == 422 and "took longer than 0.01 s" in answer["detail"], answer
        assert time.perf_counter() - started < 2, "answered when the limit ran out"
        time.sleep(3)  # its thread has ended meanwhile
        assert call(url, "GET", "/jobs")[1]["total"] == 0
        assert not list(tmp_path.glob("jobs/*"))
        monkeypatch.setattr("service.jobs.VALIDATION_SECONDS", 10.0)
        assert call(url, "POST", "/optimize", valid)[0] == 202  # the same request, in time
