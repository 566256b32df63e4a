"""Production: the largest model the hardware and the data support, then its largest batch."""

from __future__ import annotations

from collections.abc import Sequence

from tuner._stages import StageSpec
from tuner.policies._base import (
    Candidate,
    DataStats,
    Policy,
    PolicyContext,
    StageChoice,
    choice_at,
    none_within,
    nothing_fits,
)


def capacity_cap(spec: StageSpec, data: DataStats) -> float | None:
    """The most parameters the data supports (``params_per_sample`` x training samples), or None
    when the stage sets no such limit or the data's size is unknown."""
    per_sample = spec.data_limits.params_per_sample
    if per_sample is None or data.training_samples is None:
        return None
    return per_sample * data.training_samples


class LargestCapacity(Policy):
    """The largest capacity that fits at ``min_batch_size`` and respects the data limits:
    the probe sample covers the dataset's largest complex (at the configured percentile), and,
    when ``params_per_sample`` is set, capacity <= params_per_sample x training samples.
    Then B = B_max of that model. Equal capacities: the larger batch wins.

    The fit search's score is the capacity, which a model's parameter count bounds before any
    probe: models smaller than one that already fits are not probed (branch and bound)."""

    name = "largest_capacity"
    uses_data = True
    score_unit = "parameters"
    bound_is_capacity = True

    def choose(self, candidates: Sequence[Candidate], ctx: PolicyContext) -> StageChoice:
        limits, config, data = ctx.spec.data_limits, ctx.config, ctx.data
        cap = capacity_cap(ctx.spec, data)
        options = []
        for c in candidates:
            p = c.probe
            if p is None or not p.fits_at(config.min_batch_size):
                continue
            if cap is not None and p.capacity > cap:
                continue
            options.append(c)
        if data.atoms_needed is not None:
            atoms = [c.probe.sample_atoms for c in options if c.probe is not None]
            if atoms and min(atoms) < data.atoms_needed:
                why = (
                    f"the probe's complexes have {min(atoms)} atoms but the data's need "
                    f"{data.atoms_needed} (percentile {limits.max_atoms_percentile:g}): run "
                    f"with --max-atoms {data.atoms_needed} or more"
                )
                return none_within(ctx.stage, candidates, "data limit (max_atoms)", why)
        if not options:
            fits = [c.probe.fits_at(config.min_batch_size) for c in candidates if c.probe]
            if cap is not None and any(fits):
                why = (
                    f"every configuration that fits in memory has more than {cap:,.0f} "
                    f"parameters ({limits.params_per_sample:g} per training sample)"
                )
                return none_within(ctx.stage, candidates, "data limit (params_per_sample)", why)
            why = f"no configuration fits in memory at batch {config.min_batch_size}"
            return nothing_fits(ctx.stage, candidates, why)
        best = max(options, key=lambda c: (c.probe.capacity, c.probe.max_batch_size))  # type: ignore[union-attr]
        p = best.probe
        assert p is not None
        batch = min(p.max_batch_size, config.max_batch_size)
        return choice_at(best, batch, ctx, "largest capacity that fits, at its largest batch")

    def score(self, choice: StageChoice) -> float:
        return float(choice.capacity or 0)

    def bound(self, capacity: float, ctx: PolicyContext) -> float | None:
        cap = capacity_cap(ctx.spec, ctx.data)
        return 0.0 if cap is not None and capacity > cap else capacity
