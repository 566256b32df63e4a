"""The service under load, on loopback: ``stagetune serve`` with its own local Ray head.

1. Time from ``POST /optimize`` to a finished job of the quick preset (all three stages), the
   queue empty.
2. Latency of ``GET /jobs/{id}`` at 50 concurrent clients: each client holds one keep-alive
   connection and sends its next request as soon as the last is answered (a closed loop, so the
   server is never idle). Measured with the cluster idle, then while a job runs on the same cores.
3. Latency of ``POST /optimize`` at 50 concurrent clients, the same way; each POST queues a small
   job, and all of them are cancelled afterwards.

The clients are coroutines in this process, not in the server's: one process, one event loop,
about a tenth of a millisecond of CPU per request.

    python bench/service.py [--clients 50 --requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "bench-token"
SMALL = {"preset": "quick", "stages": ["prototyping"], "tune": False, "fit_trials": 1}


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def client(port: int, method: str, path: str, body: Any, n: int) -> list[float]:
    """``n`` requests on one keep-alive connection, each sent when the last is answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"" if body is None else json.dumps(body).encode()
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    took = []
    for _ in range(n):
        started = time.perf_counter()
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        took.append(time.perf_counter() - started)
        assert status in (200, 202), status
    writer.close()
    return took


def load(port: int, method: str, path: str, body: Any, clients: int, n: int) -> str:
    """A table row: requests, throughput and latency percentiles."""

    async def run() -> tuple[list[float], float]:
        started = time.perf_counter()
        runs = await asyncio.gather(*(client(port, method, path, body, n) for _ in range(clients)))
        return [t for run in runs for t in run], time.perf_counter() - started

    samples, wall = asyncio.run(run())
    ms = sorted(s * 1000 for s in samples)
    p = statistics.quantiles(ms, n=100)
    return (
        f"{len(ms)} | {len(ms) / wall:.0f}/s | {p[49]:.1f} ms | {p[94]:.1f} ms | "
        f"{p[98]:.1f} ms | {ms[-1]:.1f} ms"
    )


def submit(base: str, options: dict[str, Any]) -> str:
    status, job = call(f"{base}/optimize", "POST", options)
    if status not in (200, 202):
        raise SystemExit(f"POST /optimize answered {status}: {job}")
    return str(job["job_id"])


def wait(base: str, job_id: str, states: set[str]) -> None:
    while call(f"{base}/jobs/{job_id}")[1]["state"] not in states:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="GETs per client")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as state:
        env = {
            **os.environ,
            "STAGETUNE_STATE_DIR": state,
            "STAGETUNE_PORT": str(port),
            "STAGETUNE_API_TOKEN": TOKEN,
            "STAGETUNE_DASHBOARD_PORT": "0",
        }
        log = Path(state) / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            while True:
                try:
                    if call(f"{base}/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.5)
            started = time.perf_counter()
            job = submit(base, {"preset": "quick"})
            wait(base, job, {"succeeded", "failed"})
            print(
                f"POST /optimize to a finished quick job (3 stages): "
                f"{time.perf_counter() - started:.0f} s"
            )

            time.sleep(10)  # the job's Ray workers have exited: the cluster is idle
            status = f"/jobs/{job}"
            rows = [
                (
                    "GET /jobs/{id}, cluster idle",
                    load(port, "GET", status, None, args.clients, args.requests),
                )
            ]
            running = submit(base, {"preset": "quick"})
            wait(base, running, {"running"})
            time.sleep(10)  # its trials are training
            rows.append(
                (
                    "GET /jobs/{id}, a job training on the same cores",
                    load(port, "GET", status, None, args.clients, args.requests),
                )
            )
            call(f"{base}/jobs/{running}", "DELETE")
            wait(base, running, {"cancelled"})
            time.sleep(10)  # its Ray workers have exited
            rows.append(
                (
                    "POST /optimize, cluster idle",
                    load(port, "POST", "/optimize", SMALL, args.clients, 2),
                )
            )
            print("| request | n | throughput | p50 | p95 | p99 | max |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for name, row in rows:
                print(f"| {name} | {row} |")
            _, listed = call(f"{base}/jobs?limit=500")
            for j in listed["jobs"]:
                if j["state"] in ("queued", "running"):
                    call(f"{base}/jobs/{j['job_id']}", "DELETE")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)


if __name__ == "__main__":
    main()
