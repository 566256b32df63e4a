"""What every layer's tests share: the checkout (``REPO``), the real PDBbind sample beside it,
tiny training configs, a free port, and ``stagetune`` run as a user runs it. Each layer's own
helpers are beside its tests (``tests/service/live_server.py``: a service on loopback,
``tests/tuner/conftest.py``: a local Ray cluster)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from model import TrainConfig, load_train_config

REPO = Path(__file__).resolve().parents[1]
PDBBIND_MINI = REPO.parent / "shared" / "data" / "pdbbind-mini"

# A model and data small enough for a 2-core CPU: a training step takes milliseconds.
TINY = [
    "model.hidden_channels=16",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.num_rbf=8",
    "data.max_atoms=60",
    "data.num_synthetic=24",
    "train.batch_size=8",
    "train.epochs=1",
    "optimizer.warmup_steps=2",
    "optimizer.log_config=false",
]


@pytest.fixture(scope="session")
def pdbbind_mini() -> Path:
    if not (PDBBIND_MINI / "atoms.csv").is_file():
        raise FileNotFoundError(f"the test data is missing: {PDBBIND_MINI}")
    return PDBBIND_MINI


@pytest.fixture
def tiny_config(tmp_path: Path) -> Callable[..., TrainConfig]:
    """``tiny_config("optimizer=sgd", ...)``: the tiny config plus overrides, output in tmp."""

    def make(*overrides: str) -> TrainConfig:
        return load_train_config([*TINY, f"train.output_dir={tmp_path / 'runs'}", *overrides])

    return make


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``stagetune ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def free_port() -> int:
    """A TCP port of loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
