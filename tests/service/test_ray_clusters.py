"""The service pointed at a Ray it does not own (``STAGETUNE_RAY_ADDRESS``), each a real address
on loopback: one where nothing answers, and a real Ray cluster of the test's own (started as its
operator would, with a token), which the test kills and starts again. The service runs in the
test's process, talking to Ray through its real job API (tests/service/test_api.py runs the
service's own head; tests/service/test_reliability.py the same paths against the in-memory
seam)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from service.runner import LocalHead, RayJobs, RayUnreachable
from service.settings import Settings
from tests.service.live_server import QUICK, TOKEN, app_in_thread, call, free_port, until

pytestmark = pytest.mark.slow  # real Ray heads and clusters

#: A job that runs for minutes: still running when its cluster is killed.
LONG = {**QUICK, "tune": True, "tune_trials": 4, "max_epochs": 30}
FINISHED = {"succeeded", "failed", "cancelled"}


class Cluster:
    """A Ray head on loopback that the test starts, kills and starts again at one address (its
    dashboard's port), with a token of its own; the service is only told where it is."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = folder / "ray-auth-token"  # LocalHead makes it, once
        self.head: LocalHead | None = None

    def start(self) -> None:
        self.head = LocalHead(self.port, self.folder).__enter__()
        assert self.head.url == self.url
        assert until(self.has_a_node, timeout=60), "the head's node never came up"

    def has_a_node(self) -> bool:
        """Whether the head's node has joined (its dashboard answers a moment before)."""
        try:
            return bool(RayJobs(self.url, self.token_file).node_resources())
        except RayUnreachable:
            return False

    def kill(self) -> None:
        """SIGKILL every process of the head (GCS, raylet, dashboard, workers), and each job's
        driver (Ray starts each in a session of its own)."""
        assert self.head is not None
        drivers = [p for p in psutil.process_iter(["cmdline"]) if _driver_of(p, self.head.pid)]
        os.killpg(self.head.pid, signal.SIGKILL)
        for driver in drivers:
            driver.kill()
        assert until(lambda: not self.head.alive(), timeout=30)  # type: ignore[union-attr]
        self.head = None

    def close(self) -> None:
        if self.head is not None:
            self.head.__exit__(None, None, None)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job Ray holds, as its dashboard lists them."""
        request = urllib.request.Request(f"{self.url}/api/jobs/")
        request.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return list(json.loads(answer.read()))


def _driver_of(process: psutil.Process, head: int) -> bool:
    """Whether ``process`` is a job driver (``stagetune ...``) that a process of ``head`` (its
    process group) started."""
    try:
        parent = process.parent()
        return (
            parent is not None
            and os.getpgid(parent.pid) == head
            and "stagetune" in " ".join(process.info["cmdline"] or ())
        )
    except (psutil.Error, OSError):
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.close()


def settings(state: Path, address: str, token_file: Path) -> Settings:
    return Settings(
        state_dir=state,
        api_token=SecretStr(TOKEN),
        port=free_port(),
        ray_address=address,
        ray_auth_token_file=token_file,
    )


def health(url: str) -> tuple[int, Any]:
    return call(url, "GET", "/healthz", token=None)


def state(url: str, job: dict[str, Any]) -> str:
    return str(call(url, "GET", f"/jobs/{job['job_id']}")[1]["state"])


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_an_address_where_no_ray_answers_is_reported_and_no_head_is_started(tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"
    before = children()
    with app_in_thread(settings(tmp_path, nowhere, tmp_path / "no-token"), None) as url:
        assert until(lambda: health(url)[0] == 503, timeout=10)
        reported = health(url)[1]
        assert reported["status"] == "unavailable", reported
        assert reported["ray"] == f"Ray at {nowhere} does not answer", reported
        status, answer = call(url, "POST", "/optimize", QUICK)  # no reading of its nodes yet
        assert status == 503 and nowhere in answer["detail"], answer
        assert call(url, "GET", "/jobs")[1]["total"] == 0
        time.sleep(3)  # poll after poll: the same report, since the same time
        assert health(url) == (503, reported)
    # a cluster the service does not own is never started in its place
    assert children() == before
    assert not (tmp_path / "ray-head.json").exists()


def test_every_call_to_a_stopped_head_gives_up_saying_ray_does_not_answer(cluster, monkeypatch):
    """A head whose processes are stopped takes connections and never answers: each call of the
    service's seam to Ray gives up after its timeout (30 s; 2 here), as not answering, instead
    of holding the follower, or a cancel, until the head goes on."""
    monkeypatch.setattr("service.runner.CALL_SECONDS", 2.0)
    assert cluster.head is not None
    calls = {
        "ping": lambda ray: ray.ping(),
        "nodes": lambda ray: ray.node_resources(),
        "state": lambda ray: ray.state("stagetune-nothing"),
        "stop": lambda ray: ray.stop("stagetune-nothing"),
    }
    os.killpg(cluster.head.pid, signal.SIGSTOP)
    try:
        for name, ask in calls.items():
            asked = time.monotonic()
            with pytest.raises(RayUnreachable, match="does not answer"):
                ask(RayJobs(cluster.url, cluster.token_file))
            assert time.monotonic() - asked < 10, name
    finally:
        os.killpg(cluster.head.pid, signal.SIGCONT)


class AnswerLost(RayJobs):
    """Ray's job API whose answer to the first submission is lost on the way: Ray took the job,
    the service hears that Ray does not answer."""

    lost = 1

    def submit(self, submission_id: str, entrypoint: str, gpus: float = 0) -> str:
        taken = super().submit(submission_id, entrypoint, gpus)
        if self.lost:
            self.lost -= 1
            raise RayUnreachable(f"Ray at {self.address} does not answer: read timed out")
        return taken


def test_a_submission_whose_answer_was_lost_runs_once(cluster, tmp_path):
    """The job runs to its result, and Ray's dashboard lists it once: found there by the next
    try, not failed as refused, not submitted again."""
    ray = AnswerLost(cluster.url, cluster.token_file)
    with app_in_thread(settings(tmp_path, cluster.url, cluster.token_file), ray) as url:
        _, job = call(url, "POST", "/optimize", QUICK)
        assert until(lambda: state(url, job) in FINISHED, timeout=300)
        done = call(url, "GET", f"/jobs/{job['job_id']}")[1]
        assert done["state"] == "succeeded", done
        assert call(url, "GET", f"/jobs/{job['job_id']}/result")[0] == 200
    assert ray.lost == 0  # the answer was lost
    ran = [j for j in cluster.jobs() if job["job_id"] in j["entrypoint"]]
    assert [j["status"] for j in ran] == ["SUCCEEDED"], ran


def test_a_cluster_the_service_does_not_own_is_reported_never_restarted(cluster, tmp_path):
    """Killed: /healthz says so, jobs wait (a new one queued, a running one not failed) and no
    Ray is started in its place; started again by its operator: the job it lost fails saying
    so, the queued one runs."""
    with app_in_thread(settings(tmp_path, cluster.url, cluster.token_file), None) as url:
        assert until(lambda: health(url)[0] == 200, timeout=30)
        _, lost = call(url, "POST", "/optimize", LONG)
        assert until(lambda: state(url, lost) == "running", timeout=60)
        before = children()
        cluster.kill()
        assert until(lambda: health(url)[0] == 503, timeout=10)
        assert health(url)[1]["ray"] == f"Ray at {cluster.url} does not answer"
        status, queued = call(url, "POST", "/optimize", QUICK)  # the last reading serves
        assert status == 202 and queued["state"] == "queued", queued
        time.sleep(4)  # poll after poll
        assert health(url)[0] == 503
        assert state(url, lost) == "running" and state(url, queued) == "queued"
        assert children() <= before and not (tmp_path / "ray-head.json").exists()

        cluster.start()
        assert until(lambda: health(url)[0] == 200, timeout=30)
        assert until(lambda: state(url, lost) == "failed")
        error = call(url, "GET", f"/jobs/{lost['job_id']}")[1]["error"]
        assert error == "Ray lost the job (was its cluster restarted?)"
        assert until(lambda: state(url, queued) in FINISHED, timeout=300)
        assert state(url, queued) == "succeeded"
