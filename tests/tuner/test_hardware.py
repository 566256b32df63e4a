"""Hardware discovery and memory sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model import ConfigError
from stagetune_api import limit_words
from tuner import device_for, discover, format_size, parse_size

from ..conftest import run_cli


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("1.5GB", 1_500_000_000),
        ("2000000", 2_000_000),
        ("64 kib", 64 * 1024),
        (12345, 12345),
    ],
)
def test_sizes_parse(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "4XB", "-1GiB", ""])
def test_bad_sizes_name_the_text_and_the_units(text):
    with pytest.raises(ConfigError, match=f"{text!r}.*GiB"):
        parse_size(text)


def test_a_zero_size_is_refused():
    with pytest.raises(ConfigError, match="must be positive"):
        parse_size("0MiB")


def test_format_size():
    assert format_size(3 * 2**30) == "3.00 GiB" and format_size(1536) == "1.50 KiB"


def test_a_limit_says_what_fraction_of_the_budget_it_is():
    assert limit_words(round(0.9 * 256 * 2**20), 0.9) == "230.40 MiB (90 % of 256.00 MiB)"
    assert limit_words(2**30, 1.0) == "1.00 GiB"  # the whole budget: nothing to explain


def test_cpu_budget_declared_or_half_of_available():
    hw = discover("1GiB")
    cpu = device_for(hw, "cpu")
    assert cpu.kind == "cpu" and cpu.memory_bytes == 2**30
    default = device_for(discover(), "cpu")
    assert 0 < default.memory_bytes <= hw.host_memory_bytes // 2 + 1
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    available = next(int(ln.split()[1]) * 1024 for ln in meminfo if ln.startswith("MemAvailable"))
    assert default.memory_bytes == pytest.approx(available * 0.5, rel=0.1)


def test_gpus_are_listed_when_present_and_auto_falls_back_to_the_cpu():
    hw = discover("1GiB")
    assert len(hw.gpus) == torch.cuda.device_count()
    expected = "cuda:0" if hw.gpus else "cpu"
    assert device_for(hw, "auto").name == expected
    for gpu in hw.gpus:
        assert gpu.memory_bytes > 0 and gpu.compute_capability and gpu.model


def test_bad_budget_and_device_are_named():
    with pytest.raises(ConfigError, match="at most the host's memory"):
        discover("100TiB")
    with pytest.raises(ConfigError, match=r"'cuda:9'.*one of: .*cpu"):
        device_for(discover("1GiB"), "cuda:9")


@pytest.mark.slow
def test_cli_hardware_json(tmp_path):
    result = run_cli("hardware", "--memory-budget", "2GiB", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    cpu = next(d for d in out["devices"] if d["kind"] == "cpu")
    assert cpu["memory_bytes"] == 2 * 2**30 and out["cpu_count"] >= 1
    assert {"name", "model", "memory_bytes", "free_bytes", "bf16", "driver"} <= set(cpu)
    # free is a part of the budget, never more; the host's own figures beside it
    assert cpu["free_bytes"] <= cpu["memory_bytes"]
    assert out["host_available_bytes"] <= out["host_memory_bytes"]
