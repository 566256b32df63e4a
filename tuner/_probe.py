"""The probe: real training steps that measure peak memory and step time, and find the largest
batch that fits. It needs no Ray, so it runs on any machine with torch.

Peak memory of one training step (forward, backward, optimizer step, in the run's precision):

- on a GPU, ``torch.cuda.max_memory_allocated`` over the step;
- on the CPU, the tensors the training holds when the step starts (weights, optimizer state,
  the batch) plus the largest growth of allocated bytes during the step, as the allocator reports
  each allocation and free to torch's profiler. Both are measured, never computed from a formula.

Those are live bytes. On the CPU the process takes more from the kernel than it has live: glibc's
heap, with freed memory kept for reuse, is split and pinned by the small objects each step leaves
behind, so it grows past a step's live bytes, and a little more over every cycle. The probe
predicts a run's footprint as the bytes it holds plus ``heap_overhead`` times what a step adds
(``CPU_HEAP_OVERHEAD``, measured over 450-step cycles by ``bench/heap.py``; 1 on a GPU), and the
limit applies to that footprint: a step fits when its live peak is at most ``live_limit_bytes``.

The largest batch is not bisected. Peak memory is linear in the batch for a worst-case sample
(``fixed + per_sample x B``). The first line runs through the measured peak at batch 1 and the
measured fixed bytes (weights, buffers, optimizer state and gradients: everything that does not
grow with the batch); one measured step at its prediction verifies it, and the line is refitted
through that point, so a second prediction is exact up to the allocator. Timed steps at batch 1
and at the answer fit the step-time model. Only batches measured to fit are ever reported.

Graphs differ in size, so the probe also answers in atoms: the same line, per atom of the
worst-case complex, gives the most atoms a batch may hold under the limit (the atom budget,
``max_atoms_per_batch``). One step on a batch packed to that budget from worst-case complexes of
mixed sizes verifies it (one more training step), so no real batch under the budget needs more.
The fixed count (``max_batch_size``, every complex at ``max_atoms``) stays as the conservative
answer for a fixed batch size.

The optimizer state is created before the first measurement by one optimizer step on zero
gradients (no forward or backward pass), so that every measured step carries it, as real ones do.

Out of memory is expected: it is caught, everything the step held is freed, and the probe goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import torch
from torch_geometric.data import Batch

from model import (
    TrainConfig,
    Trainer,
    build_model,
    count_parameters,
    heap_bytes,
)
from stagetune_api import Measurement, ProbeResult, TimeModel, footprint
from tuner._hardware import Device, format_size
from tuner._measures import is_out_of_memory, release, synchronize
from tuner._sample import ProbeSample

__all__ = ["Measurement", "Probe", "ProbeResult", "ProbeSample", "TimeModel", "is_out_of_memory"]

log = logging.getLogger(__name__)

# glibc's heap over a training step's live growth after a 450-step cycle of one batch shape, the
# most of the cases of ``python bench/heap.py`` (BENCHMARKS.md, "The C heap against live bytes").
CPU_HEAP_OVERHEAD = 1.5


def heap_overhead(device: Device) -> float:
    """How many bytes a run takes from the kernel per live byte a step adds, on ``device``:
    ``CPU_HEAP_OVERHEAD`` on a CPU with glibc's heap (where the training keeps freed memory for
    reuse), else 1 (a GPU's peak is the caching allocator's ``max_memory_allocated``)."""
    return CPU_HEAP_OVERHEAD if device.kind == "cpu" and heap_bytes() is not None else 1.0


class Probe:
    """Measures one model configuration on one device; use as a context manager.

    The trainer (model, optimizer, scaler) is built on first use and lives until ``close``, so
    every measurement includes the optimizer state a real run carries. ``limit_bytes`` is
    ``memory_fraction`` of the device's memory (GPU) or of the declared budget (CPU).
    """

    def __init__(
        self,
        config: TrainConfig,
        device: Device,
        sample: ProbeSample,
        memory_fraction: float = 0.9,
        cycle_batches: int = 450,
        timed_steps: int = 2,
        overhead: float | None = None,
    ) -> None:
        if not 0 < memory_fraction <= 1:
            raise ValueError(
                f"The value of `memory_fraction` is {memory_fraction}, but must be in (0, 1]."
            )
        self.config = config
        self.device = device
        self.torch_device = torch.device(device.name)
        self.sample = sample
        self.limit_bytes = int(device.memory_bytes * memory_fraction)
        self.cycle_batches = cycle_batches
        self.timed_steps = timed_steps
        self.heap_overhead = heap_overhead(device) if overhead is None else overhead
        if self.heap_overhead < 1:
            raise ValueError(
                f"The value of `overhead` is {self.heap_overhead}, but must be at least 1."
            )
        self.steps = 0
        self._held: int | None = None
        self._trainer: Trainer | None = None
        self._warm = False

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the trainer and everything it allocated."""
        self._trainer = None
        self._warm = False
        self._held = None
        release(self.torch_device)

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            self._trainer = Trainer(self.config, self.torch_device, self.cycle_batches)
        return self._trainer

    # --- one batch size --------------------------------------------------------------------------

    def measure(self, batch_size: int, timed_steps: int | None = None) -> Measurement:
        """Peak memory of one step at ``batch_size`` and the times of ``timed_steps`` more."""
        if batch_size < 1:
            raise ValueError(f"The value of `batch_size` is {batch_size}, but must be >= 1.")
        return self.measure_batch(self.sample.batch(batch_size), timed_steps)

    def measure_batch(self, batch: Batch, timed_steps: int | None = None) -> Measurement:
        """Peak memory of one step on ``batch`` and the times of ``timed_steps`` more."""
        batch_size, atoms = int(batch.num_graphs), int(batch.num_nodes)
        timed = self.timed_steps if timed_steps is None else timed_steps
        out_of_memory = False
        try:
            self._prime()
            batch = batch.to(self.torch_device)
            peak = self._peak_of_step(batch)
            if peak > self.live_limit_bytes:
                log.debug("batch %d: peak %s over the limit", batch_size, format_size(peak))
                return Measurement(batch_size, False, False, peak, atoms=atoms)
            times = tuple(self._timed_step(batch) for _ in range(timed))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            log.debug("batch %d: out of memory (%s)", batch_size, str(exc).splitlines()[0])
            out_of_memory = True
        if out_of_memory:
            # outside the except block: the exception, its traceback and the step's tensors
            # they hold are gone, so the memory can really be released
            batch = None
            self._recover()
            return Measurement(batch_size, False, True, None, atoms=atoms)
        return Measurement(batch_size, True, False, peak, times, atoms=atoms)

    def _prime(self) -> None:
        """Create the optimizer state with one optimizer step on zero gradients."""
        if self._warm:
            return
        trainer = self.trainer
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        self._warm = True

    def held(self) -> int:
        """Bytes held whatever the step: weights, buffers and optimizer state."""
        if self._held is None:
            self._prime()
            self._held = self.trainer.held_bytes()
        return self._held

    @property
    def live_limit_bytes(self) -> int:
        """The most live bytes a step may peak at for its footprint to stay under the limit."""
        held = self.held()
        return held + int((self.limit_bytes - held) / self.heap_overhead)

    def footprint(self, peak: int) -> int:
        """The bytes a run whose steps peak at ``peak`` live bytes takes from the device: what it
        holds, plus ``heap_overhead`` times what a step adds."""
        return footprint(peak, self.held(), self.heap_overhead)

    def fixed_bytes(self) -> int:
        """Bytes a step holds whatever the batch: weights, buffers, optimizer state, gradients."""
        self._prime()
        trainer = self.trainer
        grads = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
        return self.held() + grads

    def _add_times(self, m: Measurement, timed: int) -> Measurement:
        """Timed steps for a batch already measured to fit (its peak is not measured again)."""
        batch = self.sample.batch(m.batch_size).to(self.torch_device)
        times = tuple(self._timed_step(batch) for _ in range(timed))
        return Measurement(m.batch_size, True, False, m.peak_bytes, times)

    def _step(self, batch: Batch) -> None:
        self.steps += 1
        self.trainer.train_step(batch)
        self.trainer.flush()  # a probe step is always a full optimizer step

    def _timed_step(self, batch: Batch) -> float:
        synchronize(self.torch_device)
        t0 = time.perf_counter()
        self._step(batch)
        synchronize(self.torch_device)
        return time.perf_counter() - t0

    def _peak_of_step(self, batch: Batch) -> int:
        """Peak bytes of one step (its time is not used: it is the first at this size)."""
        self.steps += 1
        return self.trainer.step_peak(batch)

    def _recover(self) -> None:
        if self._trainer is not None:
            self._trainer.discard_pending()
        release(self.torch_device)

    # --- the largest batch -----------------------------------------------------------------------

    def find_max_batch(self, max_batch_size: int = 4096) -> ProbeResult:
        """The largest batch (at most ``max_batch_size``) whose step fits under the limit."""
        seen: dict[int, Measurement] = {}

        def at(b: int, timed: int = 0) -> Measurement:
            if b not in seen:
                seen[b] = self.measure(b, timed_steps=timed)
            elif timed and seen[b].fits and not seen[b].step_seconds:
                seen[b] = self._add_times(seen[b], timed)
            return seen[b]

        one = at(1, timed=1)
        if not one.fits or max_batch_size == 1:
            return self._result(at(1, self.timed_steps) if one.fits else None, seen)
        assert one.peak_bytes is not None
        # lo is measured to fit, hi is known not to (or is past the cap)
        lo, hi = 1, max_batch_size + 1
        anchor = (1, one.peak_bytes)
        other = (0, min(self.fixed_bytes(), one.peak_bytes - 1))
        limit = self.live_limit_bytes
        guess = _predict(other, anchor, limit)
        bisecting = False  # after an out-of-memory error without a peak, the line is no guide
        for _ in range(16):
            guess = max(lo + 1, min(hi - 1, guess))
            if hi - lo <= 1 or ((hi - 1) < lo * 1.05 and bisecting):
                break
            m = at(guess)
            if m.fits and m.peak_bytes is not None:
                lo, other = guess, (guess, m.peak_bytes)
                refit = _predict(anchor, other, limit)
                if not bisecting and refit < guess * 1.05:
                    break  # within 5 % of where the measured line puts the limit
                guess = (lo + hi) // 2 if bisecting else refit
            else:
                hi = guess
                if m.peak_bytes is not None and not bisecting:
                    other = (guess, m.peak_bytes)  # over the limit: refit through it
                    guess = _predict(anchor, other, limit)
                else:
                    bisecting = True
                    guess = (lo + hi) // 2
        return self._with_atom_budget(self._result(at(lo, self.timed_steps), seen), max_batch_size)

    def _with_atom_budget(self, result: ProbeResult, max_batch_size: int) -> ProbeResult:
        """``result`` with its atom budget (``_atom_budget``), when it has a memory line."""
        if not result.fits or result.bytes_per_sample is None or result.fixed_bytes is None:
            return result
        budget, peak = self._atom_budget(result, max_batch_size)
        return dataclasses.replace(
            result,
            max_atoms_per_batch=budget,
            atom_peak_bytes=self.footprint(peak) if peak is not None else None,
            probe_steps=self.steps,
            bytes_per_atom=round(result.bytes_per_sample / self.sample.atoms),
        )

    def _atom_budget(self, result: ProbeResult, max_batch_size: int) -> tuple[int, int | None]:
        """The most atoms a batch may hold: on the memory line in atoms (the fixed bytes plus the
        worst-case complex's bytes per atom), verified by one step on a batch packed to it from
        worst-case complexes of mixed sizes; refitted through that step if it is over the limit.
        At least the atoms of ``max_batch_size`` worst-case complexes, measured to fit already,
        which is the answer when the packed batch runs out of memory below the line; at most
        the atoms of the batch cap's worth of them.
        The budget and the live peak of the step that verified it."""
        assert result.bytes_per_sample is not None and result.fixed_bytes is not None
        per_atom = result.bytes_per_sample / self.sample.atoms
        known = self.sample.atoms * result.max_batch_size
        limit = self.live_limit_bytes
        budget = math.floor((limit - result.fixed_bytes) / per_atom)
        budget = min(budget, max_batch_size * self.sample.atoms)
        for _ in range(3):
            if budget <= known:
                break
            m = self.measure_batch(self.sample.packed(budget), timed_steps=0)
            if m.fits:
                return budget, m.peak_bytes
            if m.peak_bytes is None:  # out of memory below the line: the line is no guide
                break
            budget = math.floor(budget * limit / m.peak_bytes * 0.99)  # refit
        return known, result.live_peak_bytes

    @property
    def capacity(self) -> int:
        """Trainable parameters, counted on the meta device (no memory, cannot fail)."""
        with torch.device("meta"):
            return count_parameters(build_model(self.config.model))

    def _result(self, final: Measurement | None, seen: dict[int, Measurement]) -> ProbeResult:
        measured = tuple(sorted(seen.values(), key=lambda m: m.batch_size))
        fixed, per_sample = _memory_line(measured)
        common: dict[str, Any] = {
            "fixed_bytes": fixed,
            "bytes_per_sample": per_sample,
            "capacity": self.capacity,
            "probe_steps": self.steps,
            "device": self.device.name,
            "limit_bytes": self.limit_bytes,
            "sample_atoms": self.sample.atoms,
            "measurements": measured,
            "heap_overhead": self.heap_overhead,
            "held_bytes": self.held(),
        }
        if final is None or not final.fits or final.median_seconds is None:
            smallest = measured[0].peak_bytes if measured else None
            return ProbeResult(
                fits=False,
                max_batch_size=0,
                peak_bytes=self.footprint(smallest) if smallest is not None else None,
                live_peak_bytes=smallest,
                step_seconds=None,
                cycle_minutes=None,
                throughput=None,
                **common,
            )
        assert final.peak_bytes is not None
        # One optimizer step of a real run is accumulate_steps micro-batches of this size.
        micro = self.config.optimizer.accumulate_steps
        seconds = final.median_seconds * micro
        return ProbeResult(
            fits=True,
            max_batch_size=final.batch_size,
            peak_bytes=self.footprint(final.peak_bytes),
            live_peak_bytes=final.peak_bytes,
            step_seconds=seconds,
            cycle_minutes=self.cycle_batches * seconds / 60.0,
            throughput=final.batch_size * micro / seconds,
            time_model=_time_model(list(measured), final, micro),
            **common,
        )


def _memory_line(measured: tuple[Measurement, ...]) -> tuple[int | None, int | None]:
    """Live bytes against batch size through the smallest and largest measured batches: the
    fixed bytes and the bytes per sample (None with fewer than two batches measured)."""
    points = [(m.batch_size, m.peak_bytes) for m in measured if m.peak_bytes is not None]
    if len(points) < 2:
        return None, None
    (b0, p0), (b1, p1) = points[0], points[-1]
    per_sample = round((p1 - p0) / (b1 - b0))
    return p0 - per_sample * b0, per_sample


def _predict(low: tuple[int, int], high: tuple[int, int], limit: int) -> int:
    """The largest batch under ``limit`` on the line through two (batch, peak) points."""
    (b0, p0), (b1, p1) = low, high
    per = (p1 - p0) / (b1 - b0)
    if per <= 0:
        return max(b0, b1) * 2  # no measurable growth: double and let the measurement speak
    return math.floor(b0 + (limit - p0) / per)


def _time_model(measured: list[Measurement], final: Measurement, micro: int) -> TimeModel:
    """``t(B)`` of one optimizer step (``micro`` micro-batches of B) through the timed points."""
    timed = [(m.batch_size, m.median_seconds * micro) for m in measured if m.median_seconds]
    small = [p for p in timed if p[0] < final.batch_size]
    t_final = (final.median_seconds or 0.0) * micro
    if not small:
        return TimeModel(0.0, t_final / final.batch_size)
    b0, t0 = small[0]
    per = max(0.0, (t_final - t0) / (final.batch_size - b0))
    return TimeModel(max(0.0, t_final - per * final.batch_size), per)
