"""The trainer's malloc setting: freed memory is kept for the next step, not unmapped."""

from __future__ import annotations

from pathlib import Path

import torch

from model._memory import keep_freed_memory


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_large_freed_tensor_stays_with_the_process():
    assert keep_freed_memory()
    before = rss()
    block = torch.ones(48 << 20)  # 192 MiB, far above glibc's default mmap threshold
    held = rss()
    del block
    # with glibc's defaults the block is unmapped at once and the resident set drops by 192 MiB
    assert held - before > 150 << 20
    assert rss() > held - (16 << 20)
