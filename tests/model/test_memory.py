"""The trainer's malloc setting: freed memory is kept for the next step, not unmapped."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

#: Run in a fresh process: in the test process, heap that earlier tests freed (training runs
#: keep theirs) would hold part of the block, and its resident set would grow by less.
_FREED_BLOCK = """
from pathlib import Path
import torch
from model._memory import keep_freed_memory

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

assert keep_freed_memory()
before = rss()
block = torch.ones(48 << 20)  # 192 MiB, far above glibc's default mmap threshold
held = rss()
del block
print(held - before, held - rss())
"""


def test_a_large_freed_tensor_stays_with_the_process():
    out = subprocess.run(
        [sys.executable, "-c", _FREED_BLOCK], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    grown, dropped = (int(n) for n in out.split())
    assert grown > 150 << 20  # the block is resident
    # with glibc's defaults the block is unmapped at once and the resident set drops by 192 MiB
    assert dropped < 16 << 20
