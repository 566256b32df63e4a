"""``ray job submit -- stagetune optimize`` against a head started with ``ray start --head``, as
docs/cluster.md tells people to run it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow  # a Ray head started with `ray start`


@pytest.fixture
def auth(tmp_path) -> dict[str, str]:
    """Token authentication as docs/cluster.md sets it up, with the token in a file of the test's
    own: whether a head turns it on must not depend on a ``~/.ray/auth_token`` the machine may or
    may not have."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


@pytest.fixture
def head(tmp_path, auth):
    """A Ray head in the foreground (``--block``), so stopping it stops only what it started."""
    ray = shutil.which("ray")
    assert ray, "the ray command is not installed"
    port, dashboard = free_port(), free_port()
    log = (tmp_path / "head.log").open("w")
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
        pytest.fail(f"the dashboard never answered: {(tmp_path / 'head.log').read_text()[-2000:]}")
    yield url
    process.terminate()
    process.wait(timeout=60)
    log.close()


def test_the_head_refuses_a_client_without_the_token(head):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{head}/api/jobs/", timeout=10)
    assert refused.value.code == 401


def test_ray_job_submit_of_stagetune_optimize_succeeds(head, auth, tmp_path):
    storage = tmp_path / "jobs"
    submitted = subprocess.run(
        [
            "ray",
            "job",
            "submit",
            "--address",
            head,
            "--working-dir",
            str(REPO),
            "--",
            "stagetune",
            "optimize",
            "--preset",
            "quick",
            "--stages",
            "prototyping",
            "--no-tune",
            "--fit-trials",
            "2",
            "--storage",
            str(storage),
            "--job-id",
            "submitted",
        ],
        capture_output=True,
        text=True,
        timeout=420,
        env=auth,  # send the head's token
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
