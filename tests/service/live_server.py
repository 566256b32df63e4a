"""The service on loopback, for tests: ``Server``, ``stagetune serve`` as people run it (a
subprocess on a free port with its own state folder and local Ray head, called over HTTP); and
``app_in_thread``, the app under uvicorn in a thread of the test's process with Ray's job API
replaced (for tests that must not run real jobs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.main import create_app
from service.settings import Settings
from tests.conftest import free_port

TOKEN = "s3cret-token"
QUICK = {"preset": "quick", "stages": ["prototyping"], "tune": False, "fit_trials": 1}


def until(predicate: Any, timeout: float = 20.0) -> bool:
    """Whether ``predicate()`` comes true within ``timeout`` seconds (asked every 0.05 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request to the service at ``url``: its status, and its body as JSON (else text)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@contextmanager
def app_in_thread(settings: Settings, ray_jobs: Any) -> Iterator[str]:
    """The app of ``settings`` (its port set) under uvicorn in a thread, ``ray_jobs`` its Ray
    job API (None: Ray's own, at ``settings.ray_address``, or a head of the app's own); yields
    its URL and stops it on exit, a failed test's too (its own head with it)."""
    with serving(create_app(settings, ray_jobs=ray_jobs), settings.port) as url:
        yield url


@contextmanager
def serving(app: Any, port: int) -> Iterator[str]:
    """``app`` under uvicorn on ``port`` of loopback, in a thread: yields its URL and stops it
    on exit (``app_in_thread``, for a test that changes the app before it serves)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Server:
    """``with Server(state, data_root) as server:`` starts it, and stops it on exit."""

    def __init__(self, state: Path, data_root: Path) -> None:
        self.state = state
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STAGETUNE_STATE_DIR": str(state),
            "STAGETUNE_PORT": str(self.port),
            "STAGETUNE_API_TOKEN": TOKEN,
            "STAGETUNE_DASHBOARD_PORT": str(free_port()),  # one port, as 8265 is by default
            "STAGETUNE_DATA_ROOTS": json.dumps([str(data_root)]),
        }
        self.log = state / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.call("GET", "/healthz", token=None)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"the service did not start: {self.log.read_text()[-3000:]}")

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=120)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        return call(self.url, method, path, body, token, headers, raw)

    def wait(self, job_id: str, states: set[str], timeout: float = 300) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, job = self.call("GET", f"/jobs/{job_id}")
            assert status == 200, job
            if job["state"] in states:
                return dict(job)
            time.sleep(0.5)
        pytest.fail(f"job {job_id} never reached {states}: {job}")
