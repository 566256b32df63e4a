"""The seam to Ray: submit a job's entry point, read its status, stop it (``RayJobs``), and a Ray
head of the service's own when no cluster is configured (``LocalHead``)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.store import JobState

log = logging.getLogger(__name__)

_STATES = {
    "PENDING": JobState.RUNNING,  # submitted: the service counts it as running
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}


#: Seconds a call to Ray's job or state API may take: past it Ray counts as not answering (a
#: head whose processes are stopped takes the connection and never answers).
CALL_SECONDS = 30.0


class RayUnreachable(Exception):
    """Ray's job API does not answer (its head is down, or the network to it): the service says
    so (``/healthz`` 503, a request that needs Ray 503) and tries again; nothing is failed."""


class RayJobs:
    """Ray's job submission API at ``address`` (the dashboard's URL). Every call that cannot
    reach Ray raises ``RayUnreachable``; an answer of Ray's (a refusal) raises as Ray does."""

    def __init__(self, address: str, token_file: Path | None = None) -> None:
        self.token_file = token_file
        self.headers = _headers(token_file)
        self.address = address
        self._client: Any = None

    def connect(self, address: str) -> None:
        """Use the Ray at ``address`` from now on (a restarted head), with the token its file
        holds now."""
        self.address, self.headers, self._client = address, _headers(self.token_file), None

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._reaching():
                self._client = _timed_client()(self.address, headers=self.headers)
        return self._client

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except urllib.error.HTTPError as exc:  # it answers, but not with what was asked
            answer = f"Ray at {self.address} answered {exc.code}: {exc.reason}"
            raise RayUnreachable(answer) from exc
        except OSError as exc:  # requests' and urllib's errors are OSErrors
            raise RayUnreachable(f"Ray at {self.address} does not answer: {exc}") from exc

    def ping(self) -> None:
        """Return when Ray's dashboard answers; ``RayUnreachable`` otherwise."""
        if not _answers(self.address):
            raise RayUnreachable(f"Ray at {self.address} does not answer")

    def node_resources(self) -> list[dict[str, float]]:
        """The resources of every alive node, in Ray's names (CPU, GPU, accelerator_type:T),
        from the state API of the dashboard; ``RayUnreachable`` while there is none."""
        request = urllib.request.Request(f"{self.address}/api/v0/nodes?limit=10000")
        for key, value in self.headers.items():
            request.add_header(key, value)
        with self._reaching(), urllib.request.urlopen(request, timeout=CALL_SECONDS) as answer:
            nodes = json.loads(answer.read())["data"]["result"]["result"]
        alive = [
            {str(k): float(v) for k, v in n["resources_total"].items()}
            for n in nodes
            if n.get("state") == "ALIVE"
        ]
        if not alive:  # a head that has just started, its node not registered yet
            raise RayUnreachable(f"Ray at {self.address} has no alive node yet")
        return alive

    def submit(self, submission_id: str, entrypoint: str, gpus: float = 0) -> str:
        """Submit ``entrypoint``; with ``gpus``, its process is placed on a node with them (a
        training run trains in the entry point itself)."""
        with self._reaching():
            return str(
                self.client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    entrypoint_num_gpus=gpus or None,
                )
            )

    def state(self, submission_id: str) -> tuple[JobState, str | None] | None:
        """The job's state and Ray's message, or None when Ray does not know the job."""
        try:
            with self._reaching():
                info = self.client.get_job_info(submission_id)
        except RuntimeError as exc:  # the API answers 404 for an unknown submission
            if "does not exist" in str(exc) or "404" in str(exc):
                return None
            raise
        return _STATES[str(info.status.value)], info.message

    def stop(self, submission_id: str) -> None:
        with self._reaching():
            self.client.stop_job(submission_id)


@functools.cache
def _timed_client() -> type:
    """Ray's ``JobSubmissionClient`` with a timeout on every request (its own requests wait
    forever: a stopped head would hold the follower, and a cancel, until it went on)."""
    from ray.job_submission import JobSubmissionClient

    class TimedClient(JobSubmissionClient):
        def _do_request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", CALL_SECONDS)  # read at each call
            return super()._do_request(*args, **kwargs)

    return TimedClient


def _headers(token_file: Path | None) -> dict[str, str]:
    if token_file is not None and token_file.expanduser().is_file():
        token = token_file.expanduser().read_text().strip()
        return {"Authorization": f"Bearer {token}"}
    return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalHead:
    """A Ray head on this machine for a service given no cluster: ``with LocalHead(...) as
    head:`` starts it (or adopts the one a killed service left, named by ``ray-head.json`` in
    ``state_dir``, while it answers) and stops it, with every job on it, on exit.

    Every process of it listens on 127.0.0.1 only, every port it can be told of was free when it
    started (a second Ray on the machine takes none of them), it requires a token of its own
    (``ray-auth-token`` in ``state_dir``: other users of the machine reach loopback too), it
    exports Ray's metrics only with ``metrics`` (its exporter asks for no token), and its
    processes find the ``stagetune`` and ``ray`` commands of this Python's environment,
    activated or not. When it dies, ``restart`` starts another.
    """

    def __init__(self, dashboard_port: int, state_dir: Path, metrics: bool = False) -> None:
        self.dashboard_port = dashboard_port
        self.metrics = metrics
        self.record = state_dir / "ray-head.json"
        self.log_file = state_dir / "ray-head.log"
        self.token_file = state_dir / "ray-auth-token"
        self.temp_dir = head_temp_dir(state_dir)
        self.url, self.pid = "", 0
        #: The GCS's address (``127.0.0.1:port``), which every job's driver is given: Ray's job
        #: supervisor would otherwise hand its driver the machine's "current cluster" (the Ray
        #: started last on the machine, whoever started it). None for a head adopted from a
        #: record that did not name it.
        self.gcs: str | None = None
        #: The head's Ray session (``session_<time>_<pid>``): a job's driver runs only in it.
        self.session: str | None = None

    def __enter__(self) -> LocalHead:
        adopted = _running_head(self.record)
        if adopted is not None:
            self.url, self.pid, self.gcs = adopted
            self.session = session_of(self.temp_dir)
            log.info("adopting the local Ray head at %s (pid %d)", self.url, self.pid)
        else:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid > 0:
            _stop(self.pid)
        self.record.unlink(missing_ok=True)

    def alive(self) -> bool:
        """Whether the head's process runs (a head that is slow to answer is not dead: its
        jobs go on)."""
        return self.pid > 0 and _alive(self.pid)

    def restart(self) -> str:
        """Stop what is left of the head (its whole process group) and start a new one; its
        dashboard's URL."""
        log.warning("the local Ray head (pid %d, %s) died: starting a new one", self.pid, self.url)
        if self.pid > 0:  # what is left of its session: GCS, raylet, dashboard, workers
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        self.pid = 0  # never signalled again, even if the new head does not start
        self._start()
        return self.url

    def _start(self) -> None:
        port = self.dashboard_port
        if not port or not _port_free(port):
            port = _free_port()
        if not self.token_file.is_file():
            self.token_file.parent.mkdir(parents=True, exist_ok=True)
            self.token_file.touch(mode=0o600)
            self.token_file.write_text(secrets.token_hex(32) + "\n")
        self.temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.url, self.pid, self.gcs = _start_head(
            port, self.log_file, self.token_file, self.temp_dir, self.metrics
        )
        self.session = session_of(self.temp_dir)
        record = {"url": self.url, "pid": self.pid, "gcs": self.gcs, "session": self.session}
        self.record.write_text(json.dumps(record) + "\n")


def head_temp_dir(state_dir: Path) -> Path:
    """The head's own temporary folder (its sessions, logs, sockets and its "current cluster"
    file), named after the state folder: never /tmp/ray, which every other Ray on the machine
    shares. Short, since Ray's socket paths inside it must stay under the 107 bytes a Unix
    socket's path may have."""
    digest = hashlib.sha256(str(state_dir.expanduser().resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"stagetune-ray-{digest}"


def session_of(temp_dir: Path) -> str | None:
    """The Ray session a head with its own ``temp_dir`` runs (``session_latest`` points to its
    folder); None when it has none."""
    try:
        return Path(os.readlink(temp_dir / "session_latest")).name
    except OSError:
        return None


def _running_head(record: Path) -> tuple[str, int, str | None] | None:
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    url, pid, gcs = str(data["url"]), int(data["pid"]), data.get("gcs")
    if not _alive(pid) or not _answers(url):
        return None
    return url, pid, None if gcs is None else str(gcs)


def _start_head(
    dashboard_port: int, log_file: Path, token_file: Path, temp_dir: Path, metrics: bool
) -> tuple[str, int, str]:
    bin_dir = Path(sys.executable).parent
    ray = shutil.which("ray", path=str(bin_dir)) or shutil.which("ray")
    if ray is None:
        raise RuntimeError("the `ray` command is not installed; install ray[default]")
    ports = {name: _free_port() for name in _PORTS}
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        # Ray's switch for a cluster of one machine (meant for Windows and macOS): the node's
        # address is 127.0.0.1, so the GCS, raylet, workers, agents and metrics bind to it and
        # to nothing else. `--node-ip-address=127.0.0.1` alone is turned into the machine's
        # address, and those processes then listen on every interface.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # Ray's metrics exporter answers anyone who reaches it, token or not: off unless asked
        "RAY_enable_metrics_collection": "1" if metrics else "0",
        # the dashboard's and the autoscaler's own metrics (requests, pending nodes: no job's
        # data) cannot be turned off: free ports of their own, not Ray's fixed defaults
        "DASHBOARD_METRIC_PORT": str(_free_port()),
        "AUTOSCALER_METRIC_PORT": str(_free_port()),
    }
    env.pop("RAY_AUTH_TOKEN", None)  # the file's token, not one the service was started with
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as out:
        head = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}",
                "--disable-usage-stats",
                f"--temp-dir={temp_dir}",
                *(f"--{name}={port}" for name, port in ports.items()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # not in the service's process group: it survives a kill
        )
    url = f"http://127.0.0.1:{dashboard_port}"
    deadline = time.time() + 180
    while not _answers(url):
        if head.poll() is not None or time.time() > deadline:
            head.kill()
            raise RuntimeError(f"the local Ray head did not start; see {log_file}")
        time.sleep(0.5)
    log.info("local Ray head up, dashboard at %s, GCS at 127.0.0.1:%d", url, ports["port"])
    return url, head.pid, f"127.0.0.1:{ports['port']}"


#: Every port of a head besides its dashboard's, each given a free one.
_PORTS = (
    "port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "node-manager-port",
    "object-manager-port",
)


def _port_free(port: int) -> bool:
    """Whether the dashboard can listen on ``port``: nothing listens there. Its connections in
    TIME_WAIT (every health check leaves one) do not count; the dashboard binds over them, as
    asyncio servers do, so a head started again keeps its address."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a child of this process that exited is reaped (it would
    otherwise linger as a zombie that ``kill(pid, 0)`` still finds)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not this process's child
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _stop(pid: int, timeout: float = 90) -> None:
    """Stop a head started with ``--block``: on SIGTERM it stops every Ray process it started."""
    if pid <= 0:  # never a process group
        return
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
