"""Prototyping and validation: the highest throughput within the stage's cycle time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuner._stages import StageSpec
from tuner.policies._base import (
    Candidate,
    Policy,
    PolicyContext,
    StageChoice,
    atoms_within,
    choice_at,
    none_within,
    nothing_fits,
    step_seconds_at,
)


class TimeBoundThroughput(Policy):
    """For each model, the largest batch that fits in memory and keeps a cycle within
    ``target + window`` minutes (by the probe's step-time model); then the model with the highest
    throughput, preferring the larger capacity among throughputs within ``throughput_tie``.

    The fit search starts from the smallest configuration as well as the previous stage's best:
    the cheapest probe, and where the highest throughput usually is."""

    name = "time_bound_throughput"
    ranks_by_time = True
    score_unit = "complexes/s"

    def problem(self, spec: StageSpec) -> str | None:
        return (
            None if spec.target_minutes is not None else f"policy {self.name} needs target_minutes"
        )

    def choose(self, candidates: Sequence[Candidate], ctx: PolicyContext) -> StageChoice:
        config = ctx.config
        minutes = ctx.spec.minutes_allowed
        assert minutes is not None
        seconds_per_step = minutes * 60.0 / config.cycle_batches
        options = [c for c in (_option(c, ctx, seconds_per_step) for c in candidates) if c]
        if not options:
            if not any(c.probe is not None and c.probe.fits for c in candidates):
                why = f"no configuration fits in memory at batch {config.min_batch_size}"
                return nothing_fits(ctx.stage, candidates, why)
            return none_within(ctx.stage, candidates, "time rule", _too_slow(candidates, ctx))
        best = max(o.speed for o in options)
        close = [o for o in options if o.speed >= best * (1.0 - config.throughput_tie)]
        return max(close, key=lambda o: (o.capacity or 0, o.speed))

    def score(self, choice: StageChoice) -> float:
        return choice.speed

    def seed_points(
        self, choices: Mapping[str, list[Any]], previous: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        points = super().seed_points(choices, previous)
        smallest = {k: v[0] for k, v in choices.items()}
        return points if smallest in points else [*points, smallest]


def _option(c: Candidate, ctx: PolicyContext, seconds_per_step: float) -> StageChoice | None:
    """``c`` at the largest batch that fits in memory and keeps a cycle in time, or None.

    Time is judged on the job's data when the probe measured it: the largest atom budget whose
    step on the data's batches keeps the cycle (memory stays judged on the worst case, by the
    budget itself). Without data, on the worst case's step-time model at a fixed batch."""
    p, config = c.probe, ctx.config
    if p is None or not p.fits or p.time_model is None:
        return None
    by_time = p.time_model.largest_batch_within(seconds_per_step)
    batch = min(p.max_batch_size, by_time, config.max_batch_size)
    minutes = ctx.spec.minutes_allowed
    reason = f"highest throughput with a cycle within {minutes:g} minutes"
    if p.data is not None and p.max_atoms_per_batch is not None:
        atoms = atoms_within(p, seconds_per_step)
        if atoms < p.sample_atoms * config.min_batch_size:
            return None
        batch = max(config.min_batch_size, min(batch, p.max_batch_size))
        return choice_at(c, batch, ctx, reason + " on the job's data", atoms=atoms)
    if batch < config.min_batch_size:
        return None
    assert step_seconds_at(p, batch) is not None
    return choice_at(c, batch, ctx, reason)


def _too_slow(candidates: Sequence[Candidate], ctx: PolicyContext) -> str:
    """How far the fastest configuration that fits is from the stage's cycle time."""
    config, minutes = ctx.config, ctx.spec.minutes_allowed
    cycles = []
    for c in candidates:
        p = c.probe
        if p is None or not p.fits:
            continue
        seconds = step_seconds_at(p, config.min_batch_size)
        if p.data is not None and p.max_atoms_per_batch:
            seconds = (
                p.data.step_seconds
                * config.min_batch_size
                * p.sample_atoms
                / (p.max_atoms_per_batch)
            )
        if seconds is not None:
            cycles.append((config.cycle_batches * seconds / 60.0, c.knobs, p.capacity))
    why = (
        f"no configuration that fits in memory completes {config.cycle_batches} steps in "
        f"{minutes:g} minutes at batch {config.min_batch_size}"
    )
    if cycles:
        cycle, knobs, capacity = min(cycles, key=lambda t: t[0])
        why += f"; the fastest, {knobs} ({capacity:,} parameters), takes {cycle:.1f} minutes"
    return why
