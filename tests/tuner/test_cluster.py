"""The token a new local Ray instance authenticates with grants the cluster: a first ``stagetune
optimize`` on a machine makes it readable by its owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tuner._cluster import private_token

START_LOCAL_RAY = "from tuner._cluster import connected\nwith connected(None):\n    pass\n"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_a_new_local_instance_makes_its_token_file_private(tmp_path):
    """A real local Ray started the way a job starts it, in a fresh process whose home has no
    ``.ray`` folder yet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    started = subprocess.run(
        [sys.executable, "-c", START_LOCAL_RAY],
        env={**env, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    token = tmp_path / ".ray" / "auth_token"
    assert token.read_text().strip()
    assert mode(token) == 0o600 and mode(token.parent) == 0o700


def test_a_token_file_readable_by_others_is_made_private(tmp_path, monkeypatch):
    token = tmp_path / "ray" / "auth_token"
    token.parent.mkdir(mode=0o755)
    token.write_text("kept")
    token.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    assert private_token() == token
    assert token.read_text() == "kept"  # the cluster's token, not a new one
    assert mode(token) == 0o600 and mode(token.parent) == 0o700


def test_no_file_is_made_when_token_authentication_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "auth_token"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert private_token() is None
    assert not (tmp_path / "auth_token").exists()
