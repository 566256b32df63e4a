"""Prototyping and validation: the highest throughput within the stage's cycle time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuner.policies._base import (
    Candidate,
    Policy,
    PolicyContext,
    StageChoice,
    choice_at,
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

    def choose(self, candidates: Sequence[Candidate], ctx: PolicyContext) -> StageChoice:
        config = ctx.config
        minutes = ctx.spec.minutes_allowed
        assert minutes is not None
        seconds_per_step = minutes * 60.0 / config.cycle_batches
        options = []
        for c in candidates:
            p = c.probe
            if p is None or not p.fits or p.time_model is None:
                continue
            by_time = p.time_model.largest_batch_within(seconds_per_step)
            batch = min(p.max_batch_size, by_time, config.max_batch_size)
            if batch < config.min_batch_size:
                continue
            seconds = step_seconds_at(p, batch)
            assert seconds is not None
            options.append((c, batch, seconds, batch / seconds))
        if not options:
            fitting = any(c.probe is not None and c.probe.fits for c in candidates)
            why = (
                f"no configuration that fits in memory completes {config.cycle_batches} steps "
                f"in {minutes:g} minutes at batch {config.min_batch_size}"
                if fitting
                else f"no configuration fits in memory at batch {config.min_batch_size}"
            )
            return nothing_fits(ctx.stage, candidates, why)
        best = max(o[3] for o in options)
        close = [o for o in options if o[3] >= best * (1.0 - config.throughput_tie)]
        c, batch, _, _ = max(close, key=lambda o: (o[0].probe.capacity, o[3]))  # type: ignore[union-attr]
        reason = f"highest throughput with a cycle within {minutes:g} minutes"
        return choice_at(c, batch, ctx, reason)

    def score(self, choice: StageChoice) -> float:
        return float(choice.throughput or 0.0)

    def seed_points(
        self, choices: Mapping[str, list[Any]], previous: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        points = super().seed_points(choices, previous)
        smallest = {k: v[0] for k, v in choices.items()}
        return points if smallest in points else [*points, smallest]
