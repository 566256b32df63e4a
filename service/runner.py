"""The seam to Ray: submit a job's entry point, read its status, stop it (``RayJobs``), and a Ray
head of the service's own when no cluster is configured (``local_head``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.store import JobState

log = logging.getLogger(__name__)

_STATES = {
    "PENDING": JobState.RUNNING,  # submitted: the service counts it as running
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}


class RayJobs:
    """Ray's job submission API at ``address`` (the dashboard's URL)."""

    def __init__(self, address: str, token_file: Path | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        headers = {}
        if token_file is not None and token_file.expanduser().is_file():
            token = token_file.expanduser().read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        self.address = address
        self.headers = headers
        self.client = JobSubmissionClient(address, headers=headers)

    def node_resources(self) -> list[dict[str, float]]:
        """The resources of every alive node, in Ray's names (CPU, GPU, accelerator_type:T),
        from the state API of the dashboard."""
        request = urllib.request.Request(f"{self.address}/api/v0/nodes?limit=10000")
        for key, value in self.headers.items():
            request.add_header(key, value)
        with urllib.request.urlopen(request, timeout=30) as answer:
            nodes = json.loads(answer.read())["data"]["result"]["result"]
        return [
            {str(k): float(v) for k, v in n["resources_total"].items()}
            for n in nodes
            if n.get("state") == "ALIVE"
        ]

    def submit(self, submission_id: str, entrypoint: str, gpus: float = 0) -> str:
        """Submit ``entrypoint``; with ``gpus``, its process is placed on a node with them (a
        training run trains in the entry point itself)."""
        return str(self.client.submit_job(
            entrypoint=entrypoint, submission_id=submission_id,
            entrypoint_num_gpus=gpus or None,
        ))  # fmt: skip

    def state(self, submission_id: str) -> tuple[JobState, str | None] | None:
        """The job's state and Ray's message, or None when Ray does not know the job."""
        try:
            info = self.client.get_job_info(submission_id)
        except RuntimeError as exc:  # the API answers 404 for an unknown submission
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            raise
        return _STATES[str(info.status.value)], info.message

    def stop(self, submission_id: str) -> None:
        self.client.stop_job(submission_id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_head(dashboard_port: int, state_dir: Path) -> Iterator[str]:
    """A Ray head on this machine, its dashboard on 127.0.0.1; yields the dashboard's URL and
    stops the head (and every job on it) on exit.

    The head outlives a service that is killed: ``ray-head.json`` in ``state_dir`` names it, and
    the next start adopts it while it answers, so jobs running on it are not lost.
    """
    record = state_dir / "ray-head.json"
    adopted = _running_head(record)
    if adopted is not None:
        url, pid = adopted
        log.info("adopting the local Ray head at %s (pid %d)", url, pid)
    else:
        url, pid = _start_head(dashboard_port, state_dir / "ray-head.log")
        record.write_text(json.dumps({"url": url, "pid": pid}) + "\n")
    try:
        yield url
    finally:
        _stop(pid)
        record.unlink(missing_ok=True)


def _running_head(record: Path) -> tuple[str, int] | None:
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    url, pid = str(data["url"]), int(data["pid"])
    if not _alive(pid) or not _answers(url):
        return None
    return url, pid


def _start_head(dashboard_port: int, log_file: Path) -> tuple[str, int]:
    ray = shutil.which("ray")
    if ray is None:
        raise RuntimeError("the `ray` command is not installed; install ray[default]")
    port = dashboard_port or _free_port()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as out:
        head = subprocess.Popen(
            [ray, "start", "--head", "--block", f"--port={_free_port()}",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={port}", "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the service's process group: it survives a kill
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while not _answers(url):
        if head.poll() is not None or time.time() > deadline:
            head.kill()
            raise RuntimeError(f"the local Ray head did not start; see {log_file}")
        time.sleep(0.5)
    log.info("local Ray head up, dashboard at %s", url)
    return url, head.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _stop(pid: int, timeout: float = 90) -> None:
    """Stop a head started with ``--block``: on SIGTERM it stops every Ray process it started."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                return
        except ChildProcessError:  # adopted, not our child
            if not _alive(pid):
                return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answers (401 without the cluster's token): it is up
    except OSError:
        return False
