"""The service as people run it: ``stagetune serve`` on loopback, its own local Ray head, real
jobs, a real SQLite file; requests over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from model import load_train_config
from service.drivers import GRACE_SECONDS
from service.runner import LocalHead, RayJobs, head_temp_dir
from tests.service.live_server import QUICK, TOKEN, Server, until

pytestmark = pytest.mark.slow  # a real `stagetune serve` with its own Ray head, real jobs


@pytest.fixture(scope="module")
def server(tmp_path_factory, pdbbind_mini):
    with Server(tmp_path_factory.mktemp("service"), pdbbind_mini.parent) as server:
        yield server


def test_every_route_but_healthz_needs_the_token(server):
    assert server.call("GET", "/healthz", token=None) == (
        200,
        {
            "status": "ok",
            "ray": "ok",
            "since": None,
            "store": "ok",
            "store_since": None,
            "token": True,  # the page asks for it before its first request
        },
    )
    assert server.call("GET", "/jobs", token=None)[0] == 401
    assert server.call("GET", "/jobs", token="wrong")[0] == 401
    assert server.call("POST", "/optimize", QUICK, token=None)[0] == 401
    assert server.call("GET", "/jobs")[0] == 200


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"stages": ["staging"]}, "stages.0"),
        ({"fit_trials": 0}, "fit_trials"),
        ({"tune_trials": -1}, "tune_trials"),
        ({"optimizer": "sgd"}, "optimizer: unknown option"),
        ({"space": {"production": {"num_layers": {"min": 8, "max": 4}}}}, "min=8 is above max=4"),
        ({"space": {"production": {"hidden_channels": []}}}, "hidden_channels has no choices"),
        ({"data": "/etc"}, "data: /etc is outside the data roots"),
        ({"storage": "/tmp/elsewhere"}, "storage: set by the service"),
        ({"overrides": ["optimizer=nosuch"]}, "nosuch"),
        ({"cpus_per_trial": 64}, "cpus_per_trial=64, but the most CPUs on one node is"),
        ({"accelerator_type": "H100"}, "accelerator_type: no node has 'H100'; the cluster has"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(server, body, named):
    status, answer = server.call("POST", "/optimize", body)
    assert status == 422, answer
    assert named in answer["detail"]
    # one shape for every refusal: a line per problem, and the same key by key
    assert answer["detail"] == "\n".join(f"{p['key']}: {p['message']}" for p in answer["problems"])


def test_malformed_json_is_a_422_not_a_500(server):
    status, answer = server.call("POST", "/optimize", raw=b"{not json")
    assert status == 422 and "not valid JSON" in answer["detail"]
    assert answer["problems"][0]["key"] == "body"


def test_a_job_runs_to_its_result_profile_and_trials(server, tmp_path):
    status, job = server.call("POST", "/optimize", QUICK, headers={"Idempotency-Key": "once"})
    assert status == 202 and job["state"] in ("queued", "running")
    again = server.call("POST", "/optimize", QUICK, headers={"Idempotency-Key": "once"})
    assert again[0] == 200 and again[1]["job_id"] == job["job_id"]
    job_id = job["job_id"]
    assert job["links"]["result"].endswith(f"/jobs/{job_id}/result")

    done = server.wait(job_id, {"succeeded", "failed"})
    assert done["state"] == "succeeded", done
    assert done["progress"]["prototyping"]["fit"]["done"] == 1
    status, result = server.call("GET", f"/jobs/{job_id}/result")
    assert status == 200 and result["stages"]["prototyping"]["feasible"]
    status, profile = server.call("GET", f"/jobs/{job_id}/profiles/prototyping")
    assert status == 200
    (tmp_path / "p.yaml").write_text(profile)
    config = load_train_config(profile=tmp_path / "p.yaml")
    assert config.train.batch_size == result["stages"]["prototyping"]["batch_size"]
    status, trials = server.call("GET", f"/jobs/{job_id}/trials")
    assert status == 200 and {t["status"] for t in trials} == {"probed"}
    listed = server.call("GET", "/jobs?state=succeeded")[1]
    assert job_id in [j["job_id"] for j in listed["jobs"]]


def ray_job(server: Server, dashboard_link: str) -> dict[str, Any]:
    """The Ray job as Ray itself tells it (status, message), from the dashboard the service
    links to, with the token of the service's own head."""
    base, submission = dashboard_link.split("/#/jobs/")
    request = urllib.request.Request(f"{base}/api/jobs/{submission}")
    token = (server.state / "ray-auth-token").read_text().strip()
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read()))


def ray_job_status(server: Server, dashboard_link: str) -> str:
    return str(ray_job(server, dashboard_link)["status"])


def test_a_cancelled_job_is_stopped_on_ray_within_seconds(server):
    body = {**QUICK, "tune": True, "tune_trials": 4, "max_epochs": 30}
    status, job = server.call("POST", "/optimize", body)
    running = server.wait(job["job_id"], {"running"})
    status, cancelled = server.call("DELETE", f"/jobs/{job['job_id']}")
    assert status == 200 and cancelled["state"] == "cancelled"
    assert server.call("GET", f"/jobs/{job['job_id']}/result")[0] == 409
    deadline = time.time() + 20
    while ray_job_status(server, running["links"]["dashboard"]) != "STOPPED":
        assert time.time() < deadline, "Ray did not stop the job within 20 s"
        time.sleep(0.5)
    assert server.call("GET", f"/jobs/{job['job_id']}")[1]["state"] == "cancelled"


def test_a_job_survives_a_sigkill_of_the_service(server):
    body = {**QUICK, "tune": True, "tune_trials": 2, "max_epochs": 3}
    status, job = server.call("POST", "/optimize", body)
    assert status == 202
    server.wait(job["job_id"], {"running"})
    server.stop(signal.SIGKILL)
    server.start()  # adopts the Ray head the killed service left running
    done = server.wait(job["job_id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done
    listed = server.call("GET", "/jobs")[1]
    assert [j["job_id"] for j in listed["jobs"]].count(job["job_id"]) == 1


def test_jobs_beyond_the_running_limit_wait_in_the_queue(server):
    # STAGETUNE_MAX_RUNNING_JOBS is 1 (the default): the second job waits for the first
    body = {**QUICK, "tune": True, "tune_trials": 2, "max_epochs": 2}
    first = server.call("POST", "/optimize", body)[1]
    second = server.call("POST", "/optimize", body)[1]
    assert second["state"] == "queued"
    assert server.wait(first["job_id"], {"succeeded"})["state"] == "succeeded"
    assert server.wait(second["job_id"], {"succeeded"})["state"] == "succeeded"
    second = server.call("GET", f"/jobs/{second['job_id']}")[1]
    first = server.call("GET", f"/jobs/{first['job_id']}")[1]
    assert second["started"] >= first["finished"] - 1.5  # one poll of the service at most


def test_a_hundred_concurrent_status_requests_while_a_job_runs_are_all_answered(server):
    from concurrent.futures import ThreadPoolExecutor

    job = server.call("POST", "/optimize", {**QUICK, "tune": True, "tune_trials": 2})[1]
    server.wait(job["job_id"], {"running"})
    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(lambda _: server.call("GET", f"/jobs/{job['job_id']}"), range(100)))
    assert [status for status, _ in answers] == [200] * 100
    assert {a["job_id"] for _, a in answers} == {job["job_id"]}
    server.wait(job["job_id"], {"succeeded", "failed"})


def metric(text: str, sample: str) -> float:
    """The value of ``sample`` (a name with its labels) in Prometheus text; 0 when absent."""
    values = [
        line.rpartition(" ")[2] for line in text.splitlines() if line.startswith(sample + " ")
    ]
    assert len(values) <= 1, values
    return float(values[0]) if values else 0.0


def test_metrics_count_jobs_by_state_and_requests_by_route(server):
    # a job that succeeded: the one test_a_job_runs_to_its_result_profile_and_trials made, or now
    _, job = server.call("POST", "/optimize", QUICK, headers={"Idempotency-Key": "once"})
    assert server.wait(job["job_id"], {"succeeded", "failed"})["state"] == "succeeded"
    refused = 'stagetune_http_requests_total{method="POST",route="/optimize",status="422"}'
    before = metric(server.call("GET", "/metrics")[1], refused)
    assert server.call("POST", "/optimize", {"fit_trials": 0})[0] == 422
    status, text = server.call("GET", "/metrics")
    assert status == 200
    assert metric(text, refused) == before + 1
    for state in ("queued", "running", "succeeded", "failed", "cancelled"):
        listed = server.call("GET", f"/jobs?state={state}")[1]["total"]
        assert metric(text, f'stagetune_jobs{{state="{state}"}}') == listed, state
    assert metric(text, 'stagetune_jobs{state="succeeded"}') >= 1
    assert server.call("GET", "/metrics", token=None)[0] == 401


def test_the_curl_example_of_docs_service_md_works(server, tmp_path):
    text = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    block = text.split("## Try it", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "STAGETUNE": server.url, "TOKEN": TOKEN},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "result.json").read_text())["stages"]["prototyping"]["feasible"]
    assert "val_rmse" in done.stdout + done.stderr  # the profile trained


def test_the_polling_loop_of_docs_service_md_ends_when_the_job_does_not_succeed(server):
    """The example's wait for a job ends on every end of it: a cancelled job too."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    block = text.split("## Try it", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("until "))
    end = next(i for i, line in enumerate(lines) if line.startswith("echo "))
    loop = "\n".join([*lines[:3], *lines[start : end + 1]])  # its variables, the wait, its word
    _, job = server.call("POST", "/optimize", {**QUICK, "fit_trials": 4})
    assert server.call("DELETE", f"/jobs/{job['job_id']}")[0] in (200, 202)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", loop],
        capture_output=True,
        text=True,
        env={**os.environ, "STAGETUNE": server.url, "TOKEN": TOKEN, "JOB": job["job_id"]},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"job {job['job_id']} cancelled"


def test_a_search_with_a_stage_unanswered_succeeds_with_its_result(server):
    """A memory budget nothing fits in: `stagetune optimize` answers the stage with why it has
    no answer and exits 3, which Ray calls a failed job; the service shows the job succeeded,
    with its result."""
    body = {**QUICK, "memory_budget": "1MiB", "max_atoms": 1000}
    _, job = server.call("POST", "/optimize", body)
    done = server.wait(job["job_id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded" and done["error"] is None, done
    on_ray = ray_job(server, done["links"]["dashboard"])
    assert on_ray["status"] == "FAILED" and "exit code 3" in on_ray["message"], on_ray
    status, result = server.call("GET", f"/jobs/{job['job_id']}/result")
    assert status == 200, result
    stage = result["stages"]["prototyping"]
    assert not stage["feasible"] and "nothing fits" in stage["reason"], stage
    assert server.call("GET", f"/jobs/{job['job_id']}/profiles/prototyping")[0] == 404


def head_processes(server: Server) -> tuple[int, set[psutil.Process]]:
    """The pid of the service's own head, and every live process of it (its process group)."""
    pid = int(json.loads((server.state / "ray-head.json").read_text())["pid"])
    group = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pid and process.status() != psutil.STATUS_ZOMBIE:
                group.add(process)
    return pid, group


def listening(server: Server) -> dict[tuple[str, int], str]:
    """Every address a process of the service's own head listens on (the head and everything it
    started: GCS, raylet, workers, agents, a job's supervisor and driver), and the process."""
    pid = int(json.loads((server.state / "ray-head.json").read_text())["pid"])
    head = psutil.Process(pid)
    found = {}
    for process in [head, *head.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            for sock in process.net_connections(kind="inet"):
                if sock.status == psutil.CONN_LISTEN:
                    found[(sock.laddr.ip, sock.laddr.port)] = process.name()
    return found


def machine_address() -> str | None:
    """This machine's address on its network, if it has one besides loopback."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: the route decides the address
        address = str(s.getsockname()[0])
        return None if address.startswith("127.") else address
    return None


def test_every_process_of_the_services_head_listens_on_loopback_only(server):
    """While a job runs (its supervisor, driver and trial workers up), no process of the head
    listens beyond 127.0.0.1, and none of its ports answers on the machine's own address."""
    _, job = server.call("POST", "/optimize", {**QUICK, "tune": True, "tune_trials": 2})
    server.wait(job["job_id"], {"running"})
    assert until(lambda: drivers_of(job["job_id"]), timeout=60)
    time.sleep(5)  # the driver joins, its trials start
    ports = listening(server)
    assert len(ports) >= 8, ports  # GCS, raylet's two, agents, dashboard, client server...
    loopback = ("127.0.0.1", "::ffff:127.0.0.1", "::1")
    wide = [f"{ip}:{port} ({name})" for (ip, port), name in ports.items() if ip not in loopback]
    assert not wide, wide
    address = machine_address()
    if address is not None:
        for _, port in ports:
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((address, port))
    assert server.wait(job["job_id"], {"succeeded", "failed"})["state"] == "succeeded"
    time.sleep(5)  # what metrics there are of the job, exported by now
    leaked = [port for _, port in ports if job_data_without_token(port, job["job_id"])]
    assert not leaked, leaked


def job_data_without_token(port: int, job_id: str) -> bool:
    """Whether an HTTP GET of /metrics at ``port``, with no token, names the job or any Ray job
    (Ray's metrics exporter labels tasks and actors with their JobId)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode(errors="replace")
    except (OSError, ValueError, http.client.HTTPException):  # refused, not HTTP, 401, 404
        return False
    return job_id in text or "JobId=" in text


def test_a_stopped_head_is_reported_and_left_to_go_on(server):
    """SIGSTOP of every process of the service's own head, as a machine too busy to answer:
    /healthz says Ray does not answer, a cancel answers 503 at once and changes nothing, and
    nothing is killed or replaced; after SIGCONT, /healthz is 200 again and the job finishes."""
    _, job = server.call("POST", "/optimize", QUICK)
    server.wait(job["job_id"], {"running"})
    pid, group = head_processes(server)
    os.killpg(pid, signal.SIGSTOP)
    try:
        # within a second or two; up to a call's timeout (30 s) when the head stopped while the
        # follower was waiting for it to answer a call
        assert until(lambda: server.call("GET", "/healthz", token=None)[0] == 503, timeout=40)
        reported = server.call("GET", "/healthz", token=None)[1]
        assert "does not answer" in reported["ray"], reported
        asked = time.monotonic()
        status, answer = server.call("DELETE", f"/jobs/{job['job_id']}")
        assert status == 503 and "does not answer" in answer["detail"], answer
        assert time.monotonic() - asked < 5
        time.sleep(4)  # poll after poll: slow, not dead
        assert server.call("GET", "/healthz", token=None) == (503, reported)
        assert server.call("GET", f"/jobs/{job['job_id']}")[1]["state"] == "running"
        assert head_processes(server) == (pid, group)
        assert {p.status() for p in group} == {psutil.STATUS_STOPPED}
    finally:
        os.killpg(pid, signal.SIGCONT)
    assert until(lambda: server.call("GET", "/healthz", token=None)[0] == 200, timeout=30)
    done = server.wait(job["job_id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done
    assert server.call("GET", f"/jobs/{job['job_id']}/result")[0] == 200


def test_the_services_own_head_requires_its_token(server):
    head = json.loads((server.state / "ray-head.json").read_text())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{head['url']}/api/jobs/", timeout=10)
    assert refused.value.code == 401


def drivers_of(job_id: str) -> list[psutil.Process]:
    """The processes of a job's driver, found by their command line."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or ())
        if "stagetune" in line and f"{job_id}/spec.json" in line:
            found.append(process)
    return found


def _runs(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_killed_ray_head_is_replaced_and_its_jobs_fail_saying_why(server):
    """Last in this module: the head the other tests used is killed, with all its processes."""
    body = {**QUICK, "tune": True, "tune_trials": 4, "max_epochs": 30}
    job = server.call("POST", "/optimize", body)[1]
    server.wait(job["job_id"], {"running"})
    assert until(lambda: drivers_of(job["job_id"]), timeout=60)
    driver = drivers_of(job["job_id"])
    head = json.loads((server.state / "ray-head.json").read_text())
    os.killpg(head["pid"], signal.SIGKILL)
    killed, unhealthy = time.time(), []
    while time.time() - killed < 60:
        status, health = server.call("GET", "/healthz", token=None)
        if status == 503:
            unhealthy.append(health["ray"])
        if server.call("GET", f"/jobs/{job['job_id']}")[1]["state"] != "running":
            break
        time.sleep(0.2)
    lost = server.call("GET", f"/jobs/{job['job_id']}")[1]
    assert lost["state"] == "failed" and "Ray head died" in lost["error"], lost
    # first, perhaps, "does not answer" (its processes end a moment apart), then "died"
    assert any("died" in reason for reason in unhealthy), unhealthy
    # the lost job's driver (`sh -c stagetune optimize ...` and stagetune) ends with it
    assert until(lambda: not any(_runs(p) for p in driver), timeout=GRACE_SECONDS + 20), driver

    assert server.call("GET", "/healthz", token=None)[0] == 200
    again = json.loads((server.state / "ray-head.json").read_text())
    assert again["pid"] != head["pid"]
    assert again["url"] == head["url"]  # the dashboard's address, where people look, kept
    status, resubmitted = server.call("POST", "/optimize", QUICK)
    assert status == 202
    assert server.wait(resubmitted["job_id"], {"succeeded", "failed"})["state"] == "succeeded"


def test_another_ray_head_on_the_machine_changes_nothing(server, tmp_path):
    """A second head started on the machine after the service's (its own ports, its own temp
    folder) takes the "current cluster" file Ray's job supervisor reads to hand a driver its
    cluster (written here where the service head's supervisor reads it, as `ray start --head`
    writes it in its own): a job still runs on the service's cluster, and none on the other."""
    with LocalHead(0, tmp_path / "other") as other:
        assert other.gcs is not None and other.temp_dir != head_temp_dir(server.state)
        current = head_temp_dir(server.state) / "ray_current_cluster"
        assert current.is_file(), "the service's head keeps its own current-cluster file"
        mine = current.read_text()
        current.write_text(other.gcs)
        try:
            _, job = server.call("POST", "/optimize", QUICK)
            done = server.wait(job["job_id"], {"succeeded", "failed", "cancelled"})
        finally:
            current.write_text(mine)
        assert done["state"] == "succeeded", done
        assert ray_job_status(server, done["links"]["dashboard"]) == "SUCCEEDED"
        on_other = RayJobs(other.url, other.token_file).client.list_jobs()
        assert on_other == [], on_other


def test_a_driver_sent_to_another_ray_session_runs_nothing(server, tmp_path):
    """The service's jobs run only in its head's Ray session (``--ray-session``): a driver that
    finds another session at its address (a head replaced, the address taken by another Ray)
    fails saying so, before any trial runs."""
    head = json.loads((server.state / "ray-head.json").read_text())
    assert head["session"].startswith("session_"), head
    as_its_jobs = {  # the environment the head gives its jobs' drivers: its token, loopback
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(server.state / "ray-auth-token"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    job = ["--preset", "quick", "--stages", "prototyping", "--no-tune", "--fit-trials", "1"]
    where = ["--storage", str(tmp_path), "--job-id", "elsewhere", "--address", head["gcs"]]
    command = ["stagetune", "optimize", *job, *where, "--ray-session", "session_of_another_head"]
    ran = subprocess.run(
        command, env={**os.environ, **as_its_jobs}, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 2, ran.stderr[-3000:]
    assert f"is session {head['session']}, not session_of_another_head" in ran.stderr, ran.stderr
    assert not (tmp_path / "elsewhere" / "result.json").exists()
    assert not list((tmp_path / "elsewhere").rglob("trials.csv"))


def test_a_job_whose_trials_all_crashed_fails_with_their_error(server):
    """``data.seed=-1`` passes every check at the edge, but each probe crashes drawing its
    synthetic complexes (numpy refuses a negative seed): no stage answer, never "nothing fits";
    the job fails, Ray's message and the job's error carrying the trial's error."""
    body = {**QUICK, "overrides": ["data.seed=-1"]}
    status, job = server.call("POST", "/optimize", body)
    assert status == 202, job
    done = server.wait(job["job_id"], {"succeeded", "failed", "cancelled"})
    assert done["state"] == "failed", done
    assert "crashed" in done["error"] and "ValueError" in done["error"], done["error"]
    assert "nothing fits" not in done["error"]
    assert server.call("GET", f"/jobs/{job['job_id']}/result")[0] == 409


def test_a_client_generated_from_the_openapi_document_runs_a_job(server, tmp_path):
    """openapi-python-client, as the service's users run it, on /openapi.json: its functions
    are named for what they do (``optimize``, ``get_job``, ``get_result``), and they run a job
    to its answer."""
    status, document = server.call("GET", "/openapi.json")
    assert status == 200
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    package = tmp_path / "stagetune_client"
    made = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(package),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert {p.stem for p in (package / "api" / "jobs").glob("*.py")} >= {
        "optimize",
        "list_jobs",
        "get_job",
        "cancel_job",
        "get_result",
    }
    sys.path.insert(0, str(tmp_path))
    try:
        from stagetune_client import AuthenticatedClient
        from stagetune_client.api.jobs import get_job, get_result, optimize
        from stagetune_client.models import JobOptions, JobPublic, JobResult
    finally:
        sys.path.remove(str(tmp_path))
    client = AuthenticatedClient(base_url=server.url, token=TOKEN)
    job = optimize.sync(client=client, body=JobOptions.from_dict(QUICK))
    assert isinstance(job, JobPublic), job
    deadline = time.time() + 300
    while job.state.value not in ("succeeded", "failed") and time.time() < deadline:
        time.sleep(1.0)
        job = get_job.sync(job.job_id, client=client)
        assert isinstance(job, JobPublic), job
    assert job.state.value == "succeeded", job
    result = get_result.sync(job.job_id, client=client)
    assert isinstance(result, JobResult), result
    assert result.stages["prototyping"].feasible
