"""``/healthz`` while the service is hit: ``stagetune serve`` on loopback with its own local Ray
head, and, for ``--seconds``:

- ``--clients`` clients in a closed loop (each sends its next request when the last is answered)
  over keep-alive connections, in turn ``GET /jobs``, ``GET /jobs/{id}`` and ``POST /optimize``
  of a body just under the 1 MiB limit (1,000 overrides of about a kilobyte, refused by
  validation with a 422: the most work a body can ask for);
- one client sending a 2 MiB body, again and again (refused with a 413 before it is read);
- one probe asking ``GET /healthz`` every 20 ms, on a connection of its own: its latencies are
  the table (the goal: p99 within 100 ms).

With ``--mix overrides``, the clients send instead, in turn, the overrides that cost the most
to validate, each body under the limit and refused with a 422: the "billion laughs" of anchors
and aliases (9**8 items from 600 bytes); 1,000 values nested as deep as accepted (16), each a
kilobyte of numbers; and 250 integers of 4,000 digits.

The clients are coroutines of this process, beside the server, on the same cores.

    python bench/healthz.py [--clients 50 --seconds 20] [--mix overrides]
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

TOKEN = "bench-token"
SMALL = {"preset": "quick", "stages": ["prototyping"], "tune": False, "fit_trials": 1}
NEAR_LIMIT = {**SMALL, "overrides": [f"model.no_such_knob_{i}={'x' * 1000}" for i in range(1000)]}
OVER_LIMIT = {**SMALL, "overrides": ["model.lmax=1" * 100] * 2000}


def laughs(levels: int = 8) -> str:
    """Each level an anchored list of nine aliases of the one before."""
    parts = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for before, name in zip("abcdefgh", "bcdefghi"[: levels - 1], strict=False):
        parts.append(f"{name}: &{name} [" + ", ".join([f"*{before}"] * 9) + "]")
    return "optimizer.betas={" + ", ".join(parts) + "}"


def nested(depth: int = 16, numbers: int = 120) -> str:
    value = "[" + ", ".join(["1.5e-3"] * numbers) + "]"
    for _ in range(depth - 1):
        value = f"[{value}]"
    return f"optimizer.betas={value}"


#: The overrides that cost the most to validate, each body under the limit (--mix overrides).
WORST_OVERRIDES = [
    {**SMALL, "overrides": [laughs()]},
    {**SMALL, "overrides": [nested()] * 1000},
    {**SMALL, "overrides": ["data.seed=" + "9" * 4000] * 250},
]


def raw_request(method: str, path: str, body: object | None, token: bool = True) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    auth = f"Authorization: Bearer {TOKEN}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


async def exchange(port: int, request: bytes, conn: list) -> tuple[int, float]:
    """One request on the connection ``conn`` holds (opened again if the server closed it)."""
    started = time.perf_counter()
    if not conn:
        conn.extend(await asyncio.open_connection("127.0.0.1", port))
    reader, writer = conn
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lines = head.split(b"\r\n")
    length = next(int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    if any(x.lower() == b"connection: close" for x in lines):
        writer.close()
        conn.clear()
    return status, time.perf_counter() - started


async def loop(port: int, requests: list[bytes], until: float, seen: dict[int, int]) -> None:
    conn: list = []
    i = 0
    while time.perf_counter() < until:
        try:
            status, _ = await exchange(port, requests[i % len(requests)], conn)
        except (ConnectionError, asyncio.IncompleteReadError):  # refused unread, then closed
            conn.clear()
            status = -1
        seen[status] = seen.get(status, 0) + 1
        i += 1


async def probe(port: int, until: float) -> list[float]:
    conn: list = []
    took = []
    while time.perf_counter() < until:
        status, seconds = await exchange(port, raw_request("GET", "/healthz", None, False), conn)
        assert status == 200, status
        took.append(seconds)
        await asyncio.sleep(0.02)
    return took


async def hit(
    port: int, job: str, clients: int, seconds: float, overrides: bool
) -> tuple[list[float], dict]:
    until = time.perf_counter() + seconds
    if overrides:
        mix = [raw_request("POST", "/optimize", body) for body in WORST_OVERRIDES]
    else:
        mix = [
            raw_request("GET", "/jobs", None),
            raw_request("GET", f"/jobs/{job}", None),
            raw_request("POST", "/optimize", NEAR_LIMIT),
        ]
    seen: dict[int, int] = {}
    n = len(mix)
    loops = [loop(port, mix[i % n :] + mix[: i % n], until, seen) for i in range(clients)]
    if not overrides:
        loops.append(loop(port, [raw_request("POST", "/optimize", OVER_LIMIT)], until, seen))
    took, *_ = await asyncio.gather(probe(port, until), *loops)
    return took, seen


def call(base: str, method: str, path: str, body: object | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode()
    )
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--mix", choices=("jobs", "overrides"), default="jobs")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    sizes = [len(json.dumps(b)) / 2**20 for b in (NEAR_LIMIT, OVER_LIMIT, *WORST_OVERRIDES)]
    print("bodies (MiB): " + ", ".join(f"{size:.2f}" for size in sizes))
    with tempfile.TemporaryDirectory() as state:
        env = {
            **os.environ,
            "STAGETUNE_STATE_DIR": state,
            "STAGETUNE_PORT": str(port),
            "STAGETUNE_API_TOKEN": TOKEN,
            "STAGETUNE_DASHBOARD_PORT": "0",
            "STAGETUNE_ACCESS_LOG": "false",
        }
        with (Path(state) / "server.log").open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            while True:
                try:
                    if call(base, "GET", "/healthz")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.5)
            status, job = call(base, "POST", "/optimize", SMALL)
            assert status == 202, job
            call(base, "DELETE", f"/jobs/{job['job_id']}")
            assert call(base, "POST", "/optimize", NEAR_LIMIT)[0] == 422  # warm: torch loaded
            for body in WORST_OVERRIDES:
                started = time.perf_counter()
                status, _ = call(base, "POST", "/optimize", body)
                print(f"alone: {status} in {1000 * (time.perf_counter() - started):.0f} ms")
            overrides = args.mix == "overrides"
            took, seen = asyncio.run(
                hit(port, job["job_id"], args.clients, args.seconds, overrides)
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    ms = sorted(t * 1000 for t in took)
    p = statistics.quantiles(ms, n=100)
    print(f"answers by status: {dict(sorted(seen.items()))}")
    print("| /healthz probes | p50 | p95 | p99 | max |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {len(ms)} | {p[49]:.1f} ms | {p[94]:.1f} ms | {p[98]:.1f} ms | {ms[-1]:.1f} ms |")


if __name__ == "__main__":
    main()
