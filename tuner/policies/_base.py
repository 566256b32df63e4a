"""The policy interface: a stage's objective (choose, score, seed, bound) and the records it
works on."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner._hardware import format_size
from tuner._probe import ProbeResult
from tuner._stages import Stage, StagesConfig, StageSpec


@dataclass(frozen=True)
class Candidate:
    """One configuration of a space and what its probe found (None when pruned unprobed)."""

    knobs: dict[str, Any]
    probe: ProbeResult | None
    pruned_by: dict[str, Any] | None = None


@dataclass(frozen=True)
class DataStats:
    """What production's data limits need to know about the training data.

    Without them (the default) the data limits are not checked; ``from_atom_counts`` builds
    them from the atom counts of the complexes before cropping.
    """

    training_samples: int | None = None
    atoms_needed: int | None = None  # atoms of the complex at the configured percentile

    @classmethod
    def from_atom_counts(
        cls, counts: Sequence[int], percentile: float, training_samples: int | None = None
    ) -> DataStats:
        if not counts:
            raise ValueError("The value of `counts` is empty, but must hold one count a complex.")
        ordered = sorted(counts)
        index = max(0, math.ceil(percentile / 100.0 * len(ordered)) - 1)
        return cls(training_samples or len(ordered), ordered[index])


@dataclass(frozen=True)
class OnData:
    """A stage's batches of the job's own data, packed up to its atom budget."""

    max_atoms_per_batch: int
    complexes_per_batch: float
    step_seconds: float
    cycle_minutes: float
    throughput: float  # complexes per second
    step_spread: float = 0.0  # of the timed steps on the data (see NOISY_SPREAD)
    #: the footprint predicted on the data, measured at the probe's own budget only
    peak_bytes: int | None = None


@dataclass(frozen=True)
class StageChoice:
    """A stage's answer: the configuration and batch (and atom budget, with its figures on the
    job's data), or why there is none. ``step_seconds``, ``cycle_minutes`` and ``throughput`` are
    the worst case at ``batch_size``; ``on_data`` the job's own batches."""

    stage: Stage
    feasible: bool
    knobs: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    step_seconds: float | None = None
    cycle_minutes: float | None = None
    throughput: float | None = None
    capacity: int | None = None
    peak_bytes: int | None = None
    reason: str = ""
    on_data: OnData | None = None

    @property
    def speed(self) -> float:
        """What a throughput stage ranks by: complexes per second on the job's data when it was
        measured, else on the worst case."""
        return self.on_data.throughput if self.on_data else float(self.throughput or 0.0)


@dataclass(frozen=True)
class PolicyContext:
    """Everything a policy judges by, beside the candidates: the stage, its spec, the stages'
    shared rules (cycle, batch bounds, ties) and what is known of the data."""

    stage: Stage
    spec: StageSpec
    config: StagesConfig
    data: DataStats = field(default_factory=lambda: DataStats())

    @classmethod
    def of(cls, stage: Stage, config: StagesConfig, data: DataStats | None = None) -> PolicyContext:
        return cls(stage, config.stages[stage], config, data or DataStats())


class Policy(ABC):
    """A stage's objective, whole: which candidate it chooses, the score the fit search
    maximises, where that search starts and what bounds a score before any probe.

    Pure: no probing, no I/O; the same inputs give the same answers. The searches and the result
    ask the policy; nothing else compares stage or policy names.
    """

    name: str
    #: whether ``choose`` judges the job's data (its data limits): the job reads it only then
    uses_data: bool = False
    #: whether ``choose`` ranks by measured step times (which vary between runs a little), so
    #: that a rerun with the same seed may choose another of configurations that close
    ranks_by_time: bool = False
    #: what ``score`` counts, as the progress of a search names it
    score_unit: str = ""
    #: whether ``bound`` of a configuration is its parameter count (what a page plots a pruned
    #: configuration at, for a job that did not record ``pruned.capacity``)
    bound_is_capacity: bool = False

    def problem(self, spec: StageSpec) -> str | None:
        """What a stage of this policy lacks in ``configs/stages.yaml``; None when nothing."""
        return None

    @abstractmethod
    def choose(self, candidates: Sequence[Candidate], ctx: PolicyContext) -> StageChoice:
        """The stage's answer from the probed (and pruned) candidates."""

    @abstractmethod
    def score(self, choice: StageChoice) -> float:
        """What the fit search maximises for a feasible answer (the policy's objective)."""

    def score_of(self, knobs: dict[str, Any], probe: ProbeResult, ctx: PolicyContext) -> float:
        """One probed configuration's score: this policy applied to it alone; 0 when it would
        not be chosen even alone (it does not fit, or breaks the stage's rules)."""
        choice = self.choose([Candidate(knobs, probe)], ctx)
        return self.score(choice) if choice.feasible else 0.0

    def seed_points(
        self, choices: Mapping[str, list[Any]], previous: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """The fit search's first points: the previous stage's best, each knob snapped to its
        nearest choice here."""
        return [_snap(point, choices) for point in previous]

    def bound(self, capacity: float, ctx: PolicyContext) -> float | None:
        """An upper bound of a configuration's score known without a probe (from its parameter
        count), or None when the policy has none."""
        return None


def _snap(point: Mapping[str, Any], choices: Mapping[str, list[Any]]) -> dict[str, Any]:
    out = {}
    for knob, values in choices.items():
        wanted = point.get(knob, values[0])
        out[knob] = min(values, key=lambda v: (abs(v - wanted), v))
    return out


def step_seconds_at(probe: ProbeResult, batch: int) -> float | None:
    """Step time at ``batch``: measured at the probe's largest batch, else from its time model."""
    if batch == probe.max_batch_size and probe.step_seconds is not None:
        return probe.step_seconds
    return None if probe.time_model is None else probe.time_model.step_seconds(batch)


def on_data_at(probe: ProbeResult, atoms: int, cycle_batches: int) -> OnData | None:
    """The probe's figures on the job's data at an atom budget of ``atoms`` (at most its own):
    measured at its budget, and below it the step's part that grows with the batch scaled to
    the atoms (the fixed part is the worst case's)."""
    data, budget = probe.data, probe.max_atoms_per_batch
    if data is None or budget is None:
        return None
    fixed = min(probe.time_model.seconds_fixed if probe.time_model else 0.0, data.step_seconds)
    share = min(1.0, atoms / budget)
    seconds = fixed + (data.step_seconds - fixed) * share
    per_batch = data.complexes_per_batch * share
    return OnData(
        max_atoms_per_batch=min(atoms, budget),
        complexes_per_batch=per_batch,
        step_seconds=seconds,
        cycle_minutes=cycle_batches * seconds / 60.0,
        throughput=data.throughput * share * data.step_seconds / seconds,
        step_spread=data.step_spread,
        peak_bytes=data.peak_bytes if atoms >= budget else None,
    )


def atoms_within(probe: ProbeResult, seconds_per_step: float) -> int:
    """The largest atom budget whose step on the job's data takes at most ``seconds_per_step``
    (``on_data_at``'s model); 0 when even the fixed part takes longer."""
    data, budget = probe.data, probe.max_atoms_per_batch
    assert data is not None and budget is not None
    if data.step_seconds <= seconds_per_step:
        return budget
    fixed = min(probe.time_model.seconds_fixed if probe.time_model else 0.0, data.step_seconds)
    if seconds_per_step <= fixed:
        return 0
    return math.floor(budget * (seconds_per_step - fixed) / (data.step_seconds - fixed))


def choice_at(
    candidate: Candidate, batch: int, ctx: PolicyContext, reason: str, atoms: int | None = None
) -> StageChoice:
    """A feasible answer: ``candidate`` at ``batch`` (and an atom budget of ``atoms``, by default
    its probe's), with the figures its probe supports."""
    probe = candidate.probe
    assert probe is not None
    seconds = step_seconds_at(probe, batch)
    budget = atoms if atoms is not None else probe.max_atoms_per_batch
    on_data = on_data_at(probe, budget, ctx.config.cycle_batches) if budget else None
    return StageChoice(
        stage=ctx.stage,
        feasible=True,
        knobs=candidate.knobs,
        batch_size=batch,
        step_seconds=seconds,
        cycle_minutes=None if seconds is None else ctx.config.cycle_batches * seconds / 60.0,
        throughput=None if seconds is None else batch / seconds,
        capacity=probe.capacity,
        peak_bytes=probe.peak_bytes if batch == probe.max_batch_size else None,
        reason=reason,
        on_data=on_data,
    )


def nothing_fits(stage: Stage, candidates: Sequence[Candidate], why: str) -> StageChoice:
    """The answer when no candidate fits in memory: it names the smallest one tried and the
    memory it needed against the limit."""
    tried = [c for c in candidates if c.probe is not None]
    if not tried:
        return StageChoice(stage, False, reason=f"nothing fits: {why}; no configuration was probed")
    smallest = min(tried, key=lambda c: (c.probe.capacity, sorted(c.knobs.items())))  # type: ignore[union-attr]
    probe = smallest.probe
    assert probe is not None
    first = probe.measurements[0] if probe.measurements else None
    needed_bytes = probe.peak_bytes
    if first is not None and first.peak_bytes is not None:
        needed_bytes = probe.footprint(first.peak_bytes)
        needed = f"needed {format_size(needed_bytes)} at batch {first.batch_size}"
    elif first is not None:
        needed = f"ran out of memory at batch {first.batch_size}"
    else:
        needed = f"peaked at {format_size(probe.peak_bytes or 0)}"
    return StageChoice(
        stage,
        False,
        knobs=smallest.knobs,
        capacity=probe.capacity,
        peak_bytes=needed_bytes,
        reason=f"nothing fits: {why}; the smallest configuration tried, {smallest.knobs} "
        f"({probe.capacity:,} parameters), {needed} against a limit of "
        f"{format_size(probe.limit_bytes)} on {probe.device}",
    )


def none_within(stage: Stage, candidates: Sequence[Candidate], limit: str, why: str) -> StageChoice:
    """The answer when configurations fit in memory but break another of the stage's rules:
    ``limit`` names the rule (the time rule, a data limit), ``why`` says how; the memory is
    not the cause, and the answer says so."""
    fitting = [c for c in candidates if c.probe is not None and c.probe.fits]
    fastest = max(fitting, key=lambda c: c.probe.throughput or 0.0, default=None)  # type: ignore[union-attr]
    memory = ""
    if fastest is not None and fastest.probe is not None:
        p = fastest.probe
        memory = (
            f" ({len(fitting)} configuration(s) fit in memory, e.g. {fastest.knobs} at batch "
            f"{p.max_batch_size}, peak {format_size(p.peak_bytes or 0)} of "
            f"{format_size(p.limit_bytes)})"
        )
    return StageChoice(stage, False, reason=f"no answer: the {limit} fails: {why}{memory}")
