"""Measuring a training step's memory: the bytes the training holds, the allocator's largest growth
during a step (CPU, from torch's profiler), out-of-memory errors told from other errors, and
memory released after a step."""

from __future__ import annotations

import gc

import torch
from torch.profiler import profile
from torch_geometric.data import Batch

from model import Trainer


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def tensor_bytes(trainer: Trainer, batch: Batch | None) -> int:
    """Bytes of the distinct tensor storages the training holds: weights, buffers, gradients,
    optimizer state (Lookahead's slow weights included) and the batch."""
    tensors: list[torch.Tensor] = [*trainer.model.parameters(), *trainer.model.buffers()]
    tensors += [p.grad for p in trainer.model.parameters() if p.grad is not None]
    for optimizer in {trainer.optimizer, getattr(trainer.optimizer, "base", trainer.optimizer)}:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    if batch is not None:
        tensors += [v for _, v in batch if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def peak_growth(prof: profile) -> int:
    """The largest growth of CPU-allocated bytes during a profiled region.

    The profiler's ``total_allocated`` is a running count for the whole process (a tensor
    allocated while profiling and freed after it leaves it higher for good), so the growth is
    measured from the count just before the region's first allocation event.
    """
    from torch._C._profiler import _ExtraFields_Allocation

    results = prof.profiler.kineto_results if prof.profiler is not None else None
    if results is None:
        raise RuntimeError("the profiler recorded nothing; is another profiler running?")
    events = []
    stack = list(results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        fields = event.extra_fields
        if isinstance(fields, _ExtraFields_Allocation) and fields.device.type == "cpu":
            events.append((event.start_time_ns, fields.total_allocated, fields.alloc_size))
    if not events:
        return 0
    events.sort()
    _, first_total, first_size = events[0]
    start = first_total - first_size
    return max(0, max(total for _, total, _ in events) - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
