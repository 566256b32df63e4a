"""The policy interface: pick one configuration from probed candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    """What production's data limits need to know about the training data."""

    training_samples: int | None = None
    atoms_needed: int | None = None  # atoms of the complex at the configured percentile


@dataclass(frozen=True)
class StageChoice:
    """A stage's answer: the configuration and batch, or why there is none."""

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


class Policy(Protocol):
    """Chooses from candidates. Pure: no probing, no I/O; the same inputs give the same choice."""

    def choose(
        self,
        stage: Stage,
        spec: StageSpec,
        candidates: Sequence[Candidate],
        config: StagesConfig,
        data: DataStats,
    ) -> StageChoice: ...


def nothing_fits(stage: Stage, candidates: Sequence[Candidate], why: str) -> StageChoice:
    """The answer when no candidate qualifies: it names the smallest one tried and its memory."""
    tried = [c for c in candidates if c.probe is not None]
    if not tried:
        return StageChoice(stage, False, reason=f"nothing fits: {why}; no configuration was probed")
    smallest = min(tried, key=lambda c: (c.probe.capacity, sorted(c.knobs.items())))  # type: ignore[union-attr]
    probe = smallest.probe
    assert probe is not None
    needed = (
        f"needed {format_size(probe.peak_bytes)} at batch 1"
        if probe.peak_bytes is not None
        else "ran out of memory at batch 1"
    )
    return StageChoice(
        stage,
        False,
        knobs=smallest.knobs,
        capacity=probe.capacity,
        peak_bytes=probe.peak_bytes,
        reason=f"nothing fits: {why}; the smallest configuration tried, {smallest.knobs} "
        f"({probe.capacity:,} parameters), {needed} against a limit of "
        f"{format_size(probe.limit_bytes)} on {probe.device}",
    )
