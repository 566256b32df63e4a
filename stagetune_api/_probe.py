"""What the probe measures and finds (``ProbeResult``: the largest batch of one model, with the
measurements and figures behind it), one type from the fit trial that measures it to the driver
that chooses and the records people read.

A result crosses process boundaries as JSON (``to_json``/``from_json`` are exact inverses; a
``FitReport`` carries one). Fields marked ``Shown`` are the columns of a fit search's trial
table (``TRIAL_COLUMNS``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from stagetune_api._figures import Shown

NOISY_SPREAD = 0.2
"""Timed steps spread wider than this (interquartile range / median) make a step uncertain."""


def footprint(live_peak: int, held: int, overhead: float) -> int:
    """The bytes a run takes whose steps peak at ``live_peak`` live bytes: what it holds
    between steps, plus ``overhead`` times what a step adds."""
    return held + math.ceil(max(0, live_peak - held) * overhead)


@dataclass(frozen=True)
class Measurement:
    """One batch size, measured. ``peak_bytes`` is the step's live peak, as the instrument reads
    it (on a GPU ``max_memory_allocated``; on the CPU the bytes held plus the profiler's growth)."""

    batch_size: int
    fits: bool
    oom: bool
    peak_bytes: int | None
    step_seconds: tuple[float, ...] = ()
    atoms: int | None = None  # atoms of the batch (its complexes' sizes may differ)

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.step_seconds) if self.step_seconds else None

    def to_json(self) -> dict[str, Any]:
        """What ``stagetune probe --batch-size B --json`` prints: ``step_seconds`` is the median,
        ``step_times`` every timed step (so ``from_json`` gives back the same measurement)."""
        return {
            "batch_size": self.batch_size,
            "fits": self.fits,
            "oom": self.oom,
            "peak_bytes": self.peak_bytes,
            "step_seconds": self.median_seconds,
            "step_times": list(self.step_seconds),
            "atoms": self.atoms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        """The inverse of ``to_json``; a measurement saved before ``step_times`` was kept has its
        median alone."""
        times = data.get("step_times")
        if times is None:
            times = [] if data.get("step_seconds") is None else [data["step_seconds"]]
        return cls(
            data["batch_size"],
            data["fits"],
            data["oom"],
            data["peak_bytes"],
            tuple(times),
            data.get("atoms"),
        )


@dataclass(frozen=True)
class TimeModel:
    """Step time against batch size, fitted on the probe's own timed steps: ``a + b x B``."""

    seconds_fixed: float
    seconds_per_sample: float

    def step_seconds(self, batch_size: int) -> float:
        return self.seconds_fixed + self.seconds_per_sample * batch_size

    def largest_batch_within(self, seconds: float) -> int:
        """The largest batch whose predicted step takes at most ``seconds`` (0 if none)."""
        if self.seconds_per_sample <= 0:
            return 10**9 if self.seconds_fixed <= seconds else 0
        return max(0, math.floor((seconds - self.seconds_fixed) / self.seconds_per_sample))


@dataclass(frozen=True)
class DataFigures:
    """Batches of the data at an atom budget, and their measured training steps."""

    complexes: int
    atoms_mean: float
    atoms_max: int
    complexes_per_batch: float  # mean over shuffled epochs' batches at the budget
    step_seconds: float  # median of the timed steps (one optimizer step)
    cycle_minutes: Annotated[float, Shown("cycle on the data (min)", "figure", 6)]
    throughput: Annotated[float, Shown("complexes/s on the data", "figure", 8)]
    timed_steps: int
    step_spread: float = 0.0  # interquartile range / median of the timed steps' time per atom
    #: the footprint predicted at the budget on the data's fullest batch of an epoch (its live
    #: peak, what a step adds scaled by the allocator's overhead); None in figures saved before
    peak_bytes: int | None = None

    @property
    def noisy(self) -> bool:
        """Whether the timed steps spread too far to trust the step (``NOISY_SPREAD``): other
        work on the machine slowed some, or the data's batches differ that much."""
        return self.step_spread > NOISY_SPREAD

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataFigures:
        return cls(**data)


@dataclass(frozen=True)
class ProbeResult:
    """The largest batch of one model on one device, with the figures behind it.

    ``peak_bytes`` is the footprint predicted at the answer, which the limit applies to: the
    step's live peak (``live_peak_bytes``, measured) with what a step adds scaled by the
    allocator's ``heap_overhead`` (1 where the live peak is the footprint). ``fixed_bytes``,
    ``bytes_per_sample`` and ``bytes_per_atom`` are on the line of live bytes. A result saved
    before the footprint was predicted reads with ``live_peak_bytes`` None and an overhead of 1.
    """

    fits: bool
    max_batch_size: Annotated[int, Shown("largest batch", "count", 2)]
    peak_bytes: Annotated[int | None, Shown("peak memory", "bytes", 4)]
    fixed_bytes: int | None
    bytes_per_sample: int | None
    step_seconds: float | None
    cycle_minutes: Annotated[float | None, Shown("cycle, worst case (min)", "figure", 5)]
    throughput: Annotated[float | None, Shown("complexes/s, worst case", "figure", 7)]
    capacity: Annotated[int, Shown("parameters", "count", 1)]
    probe_steps: int
    device: str
    limit_bytes: int
    sample_atoms: int = 0
    time_model: TimeModel | None = None
    measurements: tuple[Measurement, ...] = field(default=())
    #: the atom budget: the most atoms a batch may hold
    max_atoms_per_batch: Annotated[int | None, Shown("atom budget (atoms)", "count", 3)] = None
    bytes_per_atom: int | None = None  # of the worst-case complex, on the memory line
    atom_peak_bytes: int | None = None  # footprint of the step that verified the atom budget
    data: DataFigures | None = None  # batches of the job's data at the atom budget
    live_peak_bytes: int | None = None  # the measured live peak of a step at the answer
    heap_overhead: float = 1.0
    held_bytes: int | None = None  # weights, buffers and optimizer state, held between steps

    def footprint(self, live_peak: int) -> int:
        """The footprint of a run whose steps peak at ``live_peak`` live bytes (a measurement's
        ``peak_bytes``), as the limit judges it."""
        return footprint(live_peak, self.held_bytes or 0, self.heap_overhead)

    def fits_at(self, min_batch_size: int) -> bool:
        """Whether the model fits with at least ``min_batch_size`` (a stage's floor)."""
        return self.fits and self.max_batch_size >= min_batch_size

    def to_json(self) -> dict[str, Any]:
        """What ``stagetune probe --json`` prints (plus the measurements behind it)."""
        data = asdict(self)
        data["measurements"] = [m.to_json() for m in self.measurements]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeResult:
        """The inverse of ``to_json``: a result that crossed a process boundary as JSON."""
        fields = dict(data)
        model = fields.pop("time_model", None)
        measured = fields.pop("measurements", ())
        on_data = fields.pop("data", None)
        return cls(
            **fields,
            time_model=TimeModel(**model) if model else None,
            measurements=tuple(Measurement.from_json(m) for m in measured),
            data=DataFigures.from_json(on_data) if on_data else None,
        )
