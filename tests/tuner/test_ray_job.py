"""``ray job submit -- stagetune optimize`` against a head started with ``ray start --head``, as
docs/cluster.md tells people to run it, followed as its users follow it: the job's log (live
status lines), Ray's metrics export port (stagetune's figures tagged with the job), the Actors
view (trials named by stage and search) and each trial's own log."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from tests.conftest import REPO, free_port

from .conftest import two_workers_on_real_complexes

pytestmark = pytest.mark.slow  # a Ray head started with `ray start`


@pytest.fixture(scope="module")
def auth(tmp_path_factory) -> dict[str, str]:
    """Token authentication as docs/cluster.md sets it up, with the token in a file of the test's
    own: whether a head turns it on must not depend on a ``~/.ray/auth_token`` the machine may or
    may not have."""
    token = tmp_path_factory.mktemp("auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


@dataclass(frozen=True)
class Head:
    url: str  # the dashboard's, where jobs are submitted
    address: str  # the cluster's (GCS), for Ray's state API
    metrics: str  # Ray's metrics export port, as Prometheus scrapes it


@pytest.fixture(scope="module")
def head(tmp_path_factory, auth):
    """A Ray head in the foreground (``--block``), so stopping it stops only what it started;
    with a fixed metrics export port, as Prometheus is set up to scrape."""
    ray = shutil.which("ray")
    assert ray, "the ray command is not installed"
    port, dashboard, metrics = free_port(), free_port(), free_port()
    folder = tmp_path_factory.mktemp("head")
    log = (folder / "head.log").open("w")
    process = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--metrics-export-port={metrics}",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=auth,
    )
    url = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                break
        except urllib.error.HTTPError:
            break  # it answers (401 without the cluster's token): it is up
        except OSError:
            time.sleep(1.0)
    else:
        process.terminate()
        pytest.fail(f"the dashboard never answered: {(folder / 'head.log').read_text()[-2000:]}")
    yield Head(url, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics")
    process.terminate()
    process.wait(timeout=60)
    log.close()


def submit(
    head: Head, auth: dict[str, str], submission: str, *command: str
) -> subprocess.CompletedProcess[str]:
    """``ray job submit`` of ``command`` to ``head`` under ``submission``, with this checkout as
    its working directory and the head's token; it waits for the job and prints its log."""
    where = ("--address", head.url, "--submission-id", submission, "--working-dir", str(REPO))
    return subprocess.run(
        ["ray", "job", "submit", *where, "--", *command],
        capture_output=True,
        text=True,
        timeout=420,
        env=auth,
    )


def test_the_head_refuses_a_client_without_the_token(head):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{head.url}/api/jobs/", timeout=10)
    assert refused.value.code == 401


def test_ray_job_submit_of_stagetune_optimize_succeeds(head, auth, tmp_path):
    storage = tmp_path / "jobs"
    submitted = submit(
        head,
        auth,
        "stagetune-quick-submitted",
        *("stagetune", "optimize", "--preset", "quick", "--stages", "prototyping", "--no-tune"),
        *("--fit-trials", "2", "--storage", str(storage), "--job-id", "submitted"),
    )
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-4000:]
    assert "succeeded" in output
    # the job's output carries one line per finished trial, as the dashboard shows it
    assert "prototyping fit: trial" in output and "finished" in output
    # the answer in words: its atom budget and the cycle it takes on the job's data
    assert "min per cycle on the data" in output and "complexes/s" in output
    result = json.loads((storage / "submitted" / "result.json").read_text())
    assert result["stages"]["prototyping"]["feasible"]
    assert result["provenance"]["spec"]["job_id"] == "submitted"
    said_while_it_ran(output)
    metrics_tagged_with_the_job(head)
    trials_named_with_logs_worth_opening(head, auth)


def said_while_it_ran(output: str) -> None:
    """Status lines: the running trials by id and what each tries, then the best so far."""
    status = [line for line in output.splitlines() if "prototyping fit status:" in line]
    running = [line for line in status if re.search(r"1 running \(\w{8} hidden_channels=", line)]
    assert running, status
    best = [line for line in status if "best score" in line and "complexes/s" in line]
    assert best and "2/2 done" in status[-1] and "no trial left" in status[-1], status


def metrics_tagged_with_the_job(head: Head) -> None:
    """Ray's export port serves stagetune's metrics with the job's tags (Ray sends a process's
    metrics every few seconds: asked again for up to a minute)."""
    wanted = ("ray_stagetune_trials", "ray_stagetune_best", "ray_stagetune_fit_peak_bytes")
    deadline, text = time.time() + 60, ""
    while time.time() < deadline:
        with urllib.request.urlopen(head.metrics, timeout=10) as answer:
            text = answer.read().decode()
        if all(name in text for name in wanted):
            break
        time.sleep(2)
    tagged = 'job_id="submitted"'
    for name in wanted:
        lines = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert any(tagged in line and 'stage="prototyping"' in line for line in lines), name
    done = [line for line in text.splitlines() if line.startswith("ray_stagetune_trials{")]
    assert any('state="done"' in line and line.endswith(" 2.0") for line in done), done


def trials_named_with_logs_worth_opening(head: Head, auth: dict[str, str]) -> None:
    """The Actors view names each trial by stage and search, and a trial's log says what it
    probed and what it found, without the profiler's lines."""
    script = f"""
import json
from ray.util.state import get_log, list_actors
actors = list_actors(address={head.address!r}, detail=True, limit=1000)
trials = [a for a in actors if a.repr_name == "prototyping-fit"]
logs = ["".join(get_log(address={head.address!r}, actor_id=a.actor_id, suffix=s))
        for a in trials for s in ("out", "err")]
print(json.dumps({{"trials": len(trials), "logs": logs}}))
"""
    seen = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=auth
    )
    assert seen.returncode == 0, seen.stderr[-3000:]
    found = json.loads(seen.stdout.strip().splitlines()[-1])
    assert found["trials"] == 2
    text = "".join(found["logs"])
    assert text.count("prototyping fit: probing hidden_channels=") == 2
    assert "complexes/s on the data, peak" in text
    assert "External init callback" not in text and "USDT" not in text


def test_ray_job_submit_of_stagetune_train_on_two_workers(head, auth, tmp_path, pdbbind_mini):
    """``stagetune train --workers 2`` submitted as docs/cluster.md shows: the driver joins the
    head's cluster (Ray tells it where), its two Ray Train workers train the real complexes, and
    the report says so."""
    submitted = submit(
        head,
        auth,
        "stagetune-train-submitted",
        "stagetune",
        *two_workers_on_real_complexes(pdbbind_mini, tmp_path),
    )
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-4000:]
    assert "training on 2 workers (CPU) with Ray Train" in output
    report = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert report["workers"] == 2 and len(report["epochs"]) == 2
    assert (tmp_path / "runs" / report["run_dir"].rsplit("/", 1)[-1] / "model.pt").is_file()
