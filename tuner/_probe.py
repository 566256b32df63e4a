"""The probe: real training steps that measure peak memory and step time, and find the largest
batch that fits. It needs no Ray, so it runs on any machine with torch.

Peak memory of one training step (forward, backward, optimizer step, in the run's precision):

- on a GPU, ``torch.cuda.max_memory_allocated`` over the step;
- on the CPU, the tensors the training holds when the step starts (weights, optimizer state,
  the batch) plus the largest growth of allocated bytes during the step, as the allocator reports
  each allocation and free to torch's profiler. Both are measured, never computed from a formula.

The largest batch is not bisected. Peak memory is linear in the batch for a worst-case sample
(``fixed + per_sample x B``). The first line runs through the measured peak at batch 1 and the
measured fixed bytes (weights, buffers, optimizer state and gradients: everything that does not
grow with the batch); one measured step at its prediction verifies it, and the line is refitted
through that point, so a second prediction is exact up to the allocator. Timed steps at batch 1
and at the answer fit the step-time model. Only batches measured to fit are ever reported.

The optimizer state is created before the first measurement by one optimizer step on zero
gradients (no forward or backward pass), so that every measured step carries it, as real ones do.

Out of memory is expected: it is caught, everything the step held is freed, and the probe goes on.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch_geometric.data import Batch, Data

from model import (
    AtomPolicy,
    TrainConfig,
    Trainer,
    build_model,
    count_parameters,
    radius_graph,
    read_structure,
    synthetic_complex,
    to_data,
)
from tuner._hardware import Device, format_size
from tuner._measures import (
    is_out_of_memory,
    peak_growth,
    release,
    synchronize,
    tensor_bytes,
)
from tuner._probe_records import Measurement, ProbeResult, TimeModel

__all__ = ["Measurement", "Probe", "ProbeResult", "ProbeSample", "TimeModel", "is_out_of_memory"]

log = logging.getLogger(__name__)


class ProbeSample:
    """The complex every probe batch is made of: the worst case a training batch can be.

    ``synthetic(max_atoms)``: of ``draws`` synthetic complexes of exactly ``max_atoms`` atoms at
    the packing density of real pockets, the one with the most radius-graph edges at the model's
    cutoff and neighbour cap (the default). Memory and time grow with edges, and packing varies
    from complex to complex: a typical draw would be beaten by a denser one in real batches.

    ``from_folder(path, max_atoms)``: a real PDBbind-style complex cropped to the ``max_atoms``
    atoms nearest its ligand.
    """

    def __init__(self, data: Data, source: str) -> None:
        self.data = data
        self.source = source

    @classmethod
    def synthetic(
        cls,
        max_atoms: int,
        cutoff: float = 5.0,
        max_num_neighbors: int = 32,
        seed: int = 0,
        draws: int = 64,
    ) -> ProbeSample:
        def edges(d: Data) -> int:
            return radius_graph(d.pos, cutoff, loop=True, max_num_neighbors=max_num_neighbors).size(
                1
            )

        candidates = [synthetic_complex(seed, i, max_atoms, worst_case=True) for i in range(draws)]
        densest = max(candidates, key=edges)
        return cls(
            densest,
            f"synthetic worst case: {max_atoms} atoms, {edges(densest)} edges, the densest of "
            f"{draws}",
        )

    @classmethod
    def from_folder(cls, folder: str | Path, max_atoms: int) -> ProbeSample:
        folder = Path(folder)
        structure = read_structure(folder, AtomPolicy(max_atoms=max_atoms))
        data = to_data(structure, folder.name, label=6.0)
        return cls(data, f"{folder} cropped to {data.num_nodes} atoms")

    @property
    def atoms(self) -> int:
        return int(self.data.num_nodes)

    def batch(self, size: int) -> Batch:
        return Batch.from_data_list([self.data] * size)


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
        self.steps = 0
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
        timed = self.timed_steps if timed_steps is None else timed_steps
        out_of_memory = False
        try:
            self._prime()
            batch = self.sample.batch(batch_size).to(self.torch_device)
            peak = self._peak_of_step(batch)
            if peak > self.limit_bytes:
                log.debug("batch %d: peak %s over the limit", batch_size, format_size(peak))
                return Measurement(batch_size, False, False, peak)
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
            return Measurement(batch_size, False, True, None)
        return Measurement(batch_size, True, False, peak, times)

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

    def fixed_bytes(self) -> int:
        """Bytes a step holds whatever the batch: weights, buffers, optimizer state, gradients."""
        self._prime()
        grads = sum(p.numel() * p.element_size() for p in self.trainer.model.parameters())
        return tensor_bytes(self.trainer, None) + grads

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
        if self.torch_device.type == "cuda":
            synchronize(self.torch_device)
            torch.cuda.reset_peak_memory_stats(self.torch_device)
            self._step(batch)
            synchronize(self.torch_device)
            return int(torch.cuda.max_memory_allocated(self.torch_device))
        held = tensor_bytes(self.trainer, batch)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            self._step(batch)
        return held + peak_growth(prof)

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
        guess = _predict(other, anchor, self.limit_bytes)
        bisecting = False  # after an out-of-memory error without a peak, the line is no guide
        for _ in range(16):
            guess = max(lo + 1, min(hi - 1, guess))
            if hi - lo <= 1 or ((hi - 1) < lo * 1.05 and bisecting):
                break
            m = at(guess)
            if m.fits and m.peak_bytes is not None:
                lo, other = guess, (guess, m.peak_bytes)
                refit = _predict(anchor, other, self.limit_bytes)
                if not bisecting and refit < guess * 1.05:
                    break  # within 5 % of where the measured line puts the limit
                guess = (lo + hi) // 2 if bisecting else refit
            else:
                hi = guess
                if m.peak_bytes is not None and not bisecting:
                    other = (guess, m.peak_bytes)  # over the limit: refit through it
                    guess = _predict(anchor, other, self.limit_bytes)
                else:
                    bisecting = True
                    guess = (lo + hi) // 2
        best = lo
        final = at(best, self.timed_steps)
        return self._result(final, seen)

    @property
    def capacity(self) -> int:
        """Trainable parameters, counted on the meta device (no memory, cannot fail)."""
        with torch.device("meta"):
            return count_parameters(build_model(self.config.model))

    def _result(self, final: Measurement | None, seen: dict[int, Measurement]) -> ProbeResult:
        capacity = self.capacity
        measured = sorted((m for m in seen.values()), key=lambda m: m.batch_size)
        fixed = per_sample = None
        points = [(m.batch_size, m.peak_bytes) for m in measured if m.peak_bytes is not None]
        if len(points) >= 2:
            (b0, p0), (b1, p1) = points[0], points[-1]
            per_sample = round((p1 - p0) / (b1 - b0))
            fixed = p0 - per_sample * b0
        if final is None or not final.fits or final.median_seconds is None:
            smallest = measured[0] if measured else None
            return ProbeResult(
                fits=False, max_batch_size=0,
                peak_bytes=smallest.peak_bytes if smallest else None,
                fixed_bytes=fixed, bytes_per_sample=per_sample, step_seconds=None,
                cycle_minutes=None, throughput=None, capacity=capacity,
                probe_steps=self.steps, device=self.device.name, limit_bytes=self.limit_bytes,
                sample_atoms=self.sample.atoms, measurements=tuple(measured),
            )  # fmt: skip
        # One optimizer step of a real run is accumulate_steps micro-batches of this size.
        micro = self.config.optimizer.accumulate_steps
        seconds = final.median_seconds * micro
        model = _time_model(measured, final, micro)
        return ProbeResult(
            fits=True, max_batch_size=final.batch_size, peak_bytes=final.peak_bytes,
            fixed_bytes=fixed, bytes_per_sample=per_sample, step_seconds=seconds,
            cycle_minutes=self.cycle_batches * seconds / 60.0,
            throughput=final.batch_size * micro / seconds, capacity=capacity,
            probe_steps=self.steps,
            device=self.device.name, limit_bytes=self.limit_bytes,
            sample_atoms=self.sample.atoms, time_model=model, measurements=tuple(measured),
        )  # fmt: skip


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


