"""Live memory of the process's tensors, measured, on CPU and CUDA."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache

import torch


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@cache
def _mallinfo2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    fn = getattr(ctypes.CDLL(name), "mallinfo2", None)
    if fn is not None:
        fn.restype = _MallInfo2
    return fn


def live_bytes(device: torch.device | str = "cpu") -> int | None:
    """Bytes allocated and not yet freed.

    On CUDA, ``torch.cuda.memory_allocated``. On CPU, the C heap in use (glibc's ``mallinfo2``:
    small blocks plus mmap'ed large blocks, which is where CPU tensors live), after a garbage
    collection. None where neither is available.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    fn = _mallinfo2()
    if fn is None:
        return None
    info = fn()
    return int(info.uordblks + info.hblkhd)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it.

    By default every tensor above 32 MiB is mmap'ed and unmapped again, so each training step
    pays page faults for all its large activations (system time as high as compute time, and
    step time superlinear in the batch size). With mmap off and trimming disabled, freed blocks
    are reused: a batch-4 step of the default model drops from about 11 s to 5 s on 2 cores.
    Returns whether the setting took effect (glibc only). Idempotent.
    """
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
