"""A stage evaluated in this process, configuration after configuration (no Ray).

The Ray searches run the same steps as trials; this is the reference they are checked against
and what a single machine without Ray can use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tuner._probe import ProbeResult
from tuner._pruning import DominancePruner
from tuner._stages import Stage, StagesConfig, StageSpec
from tuner.policies import Candidate, DataStats, PolicyContext, StageChoice, policy_for

log = logging.getLogger(__name__)


def probe_space(
    spec: StageSpec,
    probe_one: Callable[[dict[str, Any]], ProbeResult],
    min_batch_size: int = 1,
    pruner: DominancePruner | None = None,
) -> list[Candidate]:
    """Probe every configuration of ``spec.space``, smallest first, except those that dominate
    one that did not fit at ``min_batch_size``: they are answered without a probe."""
    pruner = pruner or DominancePruner()
    out = []
    for knobs in spec.configurations():
        failed = pruner.pruned_by(knobs)
        if failed is not None:
            log.info("pruned %s: dominates %s, which did not fit", knobs, failed)
            out.append(Candidate(knobs, None, pruned_by=failed))
            continue
        result = probe_one(knobs)
        if not result.fits_at(min_batch_size):
            pruner.record_failure(knobs)
        log.info(
            "probed %s: %s",
            knobs,
            f"batch {result.max_batch_size}, {result.step_seconds:.3f} s/step"
            if result.fits and result.step_seconds
            else "does not fit",
        )
        out.append(Candidate(knobs, result))
    return out


def choose(
    stage: Stage,
    config: StagesConfig,
    candidates: list[Candidate],
    data: DataStats | None = None,
) -> StageChoice:
    """The stage's policy applied to ``candidates``."""
    ctx = PolicyContext.of(stage, config, data)
    return policy_for(ctx.spec).choose(candidates, ctx)
