"""The service under load, on loopback: ``stagetune serve`` with its own local Ray head.

1. Time from ``POST /optimize`` to a finished job of the quick preset (all three stages), the
   queue empty.
2. Latency of ``GET /jobs/{id}`` and of ``POST /optimize`` at 50 concurrent clients (each POST
   queues a small job; all of them are cancelled afterwards).

    python bench/service.py [--clients 50 --requests 20]
"""

from __future__ import annotations

import argparse
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

TOKEN = "bench-token"


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


def timed(url: str, method: str, body: Any) -> float:
    t0 = time.perf_counter()
    status, _ = call(url, method, body)
    assert status in (200, 202), status
    return time.perf_counter() - t0


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p = statistics.quantiles(ms, n=100)
    return f"{len(ms)} | {p[49]:.1f} ms | {p[94]:.1f} ms | {p[98]:.1f} ms | {ms[-1]:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "STAGETUNE_STATE_DIR": state, "STAGETUNE_PORT": str(port),
               "STAGETUNE_API_TOKEN": TOKEN, "STAGETUNE_DASHBOARD_PORT": "0"}  # fmt: skip
        log = Path(state) / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env,
                                      stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            while True:
                try:
                    if call(f"{base}/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.5)
            t0 = time.perf_counter()
            _, job = call(f"{base}/optimize", "POST", {"preset": "quick"})
            while call(f"{base}/jobs/{job['job_id']}")[1]["state"] not in ("succeeded", "failed"):
                time.sleep(0.5)
            print(f"POST /optimize to a finished quick job (3 stages): "
                  f"{time.perf_counter() - t0:.0f} s")  # fmt: skip

            small = {"preset": "quick", "stages": ["prototyping"], "tune": False, "fit_trials": 1}
            with ThreadPoolExecutor(args.clients) as pool:
                status = list(pool.map(
                    lambda _: timed(f"{base}/jobs/{job['job_id']}", "GET", None),
                    range(args.clients * args.requests),
                ))  # fmt: skip
                posts = list(pool.map(
                    lambda _: timed(f"{base}/optimize", "POST", small),
                    range(args.clients * 2),
                ))  # fmt: skip
            print("| request | n | p50 | p95 | p99 | max |")
            print("|---|---:|---:|---:|---:|---:|")
            print(f"| GET /jobs/{{id}} | {percentiles(status)} |")
            print(f"| POST /optimize | {percentiles(posts)} |")
            _, listed = call(f"{base}/jobs?limit=500")
            for j in listed["jobs"]:
                if j["state"] in ("queued", "running"):
                    call(f"{base}/jobs/{j['job_id']}", "DELETE")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)


if __name__ == "__main__":
    main()
