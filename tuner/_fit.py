"""The fit search of a stage: HyperOpt (TPE) over the stage's architecture space, one probe per
trial, configurations the searcher can answer without a probe answered so (``ProbeSearcher``:
dominance pruning, no repeats, the policy's bound). The stage's policy then chooses among the
candidates.

The experiment lives under ``<job>/ray/<stage>-fit``, its searcher's state with it; the outcome
(every candidate, where each was measured, every trial's record) is saved by the stage loop.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from pydantic import ValidationError
from ray import tune
from ray.tune.search.hyperopt import HyperOptSearch

from model import ModelSpec, build_model, count_parameters
from stagetune_api import SCORE, Best, FitReport, Search, TrialRecord, TrialStatus
from tuner._experiment import (
    Execution,
    prefixed,
    run_experiment,
    training_settings,
    trial_record,
)
from tuner._probe import ProbeResult
from tuner._progress import ProgressBoard, SearchProgress
from tuner._searcher import ProbeSearcher, Pruned
from tuner._trials import FitContext, fit_trial, no_memory_failure, probe_of, probe_words
from tuner.policies import Candidate, Policy, PolicyContext, policy_for

log = logging.getLogger(__name__)


def knobs_key(knobs: Mapping[str, Any]) -> str:
    return json.dumps(dict(knobs), sort_keys=True)


@dataclass
class FitOutcome:
    candidates: list[Candidate]
    measured_on: dict[str, dict[str, Any]]  # knobs key -> device, device_model, node_id
    records: list[TrialRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "knobs": c.knobs,
                    "probe": c.probe.to_json() if c.probe else None,
                    "pruned_by": c.pruned_by,
                }
                for c in self.candidates
            ],
            "measured_on": self.measured_on,
            "records": [r.model_dump(mode="json") for r in self.records],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitOutcome:
        candidates = [
            Candidate(
                c["knobs"],
                ProbeResult.from_json(c["probe"]) if c["probe"] else None,
                c["pruned_by"],
            )
            for c in data["candidates"]
        ]
        records = [TrialRecord.model_validate(r) for r in data["records"]]
        return cls(candidates, data["measured_on"], records)


def run_fit(
    ctx: FitContext,
    trials: int,
    execution: Execution,
    board: ProgressBoard,
    previous: list[dict[str, Any]],
) -> FitOutcome:
    """Probe up to ``trials`` configurations of the stage's space (``previous``: the best of the
    stages before, where the search starts)."""
    stage, policy = ctx.stage, ctx.policy
    grid = list(policy.spec.configurations())
    name = f"{stage.value}-fit"
    base_model = ctx.train_config["model"]
    searcher = fit_searcher(
        policy_for(policy.spec),
        policy,
        grid,
        execution.seed,
        previous,
        capacity=lambda knobs: capacity_of({**base_model, **knobs}),
    )
    num_samples = min(trials, len(grid))
    board.update(stage.value, Search.FIT.value, {"total": num_samples})
    progress = SearchProgress(
        stage.value,
        Search.FIT.value,
        board,
        partial(_describe_probe, memory_fraction=ctx.stages.memory_fraction),
        partial(_best_probe, unit=policy_for(policy.spec).score_unit),
        pruned=lambda: len(searcher.pruned),
        total=num_samples,
    )
    results = run_experiment(
        name,
        tune.with_parameters(fit_trial, ctx=ctx),
        execution,
        progress,
        tune.TuneConfig(
            search_alg=searcher,
            num_samples=num_samples,
            max_concurrent_trials=execution.max_concurrent,
        ),
    )
    pruned = ProbeSearcher.pruned_in(str(execution.storage / name))
    outcome = _outcome(ctx, grid, results, pruned, board.retries(stage.value, Search.FIT.value))
    board.update(stage.value, Search.FIT.value, {"pruned": len(pruned)})
    log.info(
        "%s fit: %d probed, %d pruned without a probe, of %d configurations",
        stage.value,
        sum(r.status is TrialStatus.PROBED for r in outcome.records),
        len(pruned),
        len(grid),
    )
    return outcome


def _outcome(
    ctx: FitContext,
    grid: list[dict[str, Any]],
    results: list[Any],
    pruned: list[Pruned],
    retries: Mapping[str, int],
) -> FitOutcome:
    """The candidates and records of a finished fit experiment."""
    base_model = ctx.train_config["model"]
    spec = ctx.policy.spec
    settings = {
        **training_settings(ctx.train_config),
        "probe.sample": ctx.sample or "synthetic",
        "probe.memory_fraction": ctx.stages.memory_fraction,
        "probe.cycle_batches": ctx.stages.cycle_batches,
        "probe.max_batch_cap": ctx.stages.max_batch_size,
        "stage.policy": spec.policy,
        "stage.minutes_allowed": spec.minutes_allowed,
    }
    outcome = FitOutcome([], {})
    for trial in results:
        knobs = {k: trial.config[k] for k in grid[0]}
        report = FitReport.of_metrics(trial.metrics)
        probe = probe_of(report)
        status = (
            TrialStatus.ERROR
            if trial.error or report is None
            else TrialStatus.INVALID
            if report.invalid
            else TrialStatus.PROBED
        )
        variables = {**prefixed("model", {**base_model, **knobs}), **settings}
        if trial.error:
            variables["trial.error"] = error_line(trial.error)
        outcome.records.append(
            trial_record(
                ctx.stage, Search.FIT, trial, status, variables, retries, report, fit=report
            )
        )
        if report is not None and probe is not None:
            outcome.candidates.append(Candidate(knobs, probe))
            outcome.measured_on[knobs_key(knobs)] = report.model_dump(
                include={"device", "device_model", "node_id"}
            )
    for item in pruned:
        outcome.candidates.append(Candidate(item.knobs, None, pruned_by=item.failed))
        outcome.records.append(_pruned_record(ctx, item, settings))
    return outcome


def _pruned_record(ctx: FitContext, item: Pruned, settings: dict[str, Any]) -> TrialRecord:
    """A configuration answered without a probe: the failure it dominates, or the policy's
    bound on its score against the best found."""
    model = {**ctx.train_config["model"], **item.knobs}
    why = (
        prefixed("pruned_by", item.failed)
        if item.failed is not None
        else {"pruned.bound": item.bound, "pruned.best": item.best}
    )
    capacity = capacity_of(model)  # counted, never probed
    if math.isfinite(capacity):
        why["pruned.capacity"] = capacity
    return TrialRecord(
        stage=ctx.stage,
        search=Search.FIT,
        trial_id=f"pruned-{knobs_key(item.knobs)}",
        status=TrialStatus.PRUNED,
        variables={**prefixed("model", model), **settings, **why},
    )


class TrialsCrashed(RuntimeError):
    """Every trial of a stage's fit search crashed (not out of memory): the stage has no
    answer, and the job fails with the trials' error (never "nothing fits")."""


def error_line(error: Any) -> str:
    """A trial's error in one line: the last line of what it raised (Ray wraps it in its
    traceback), at most 500 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:500]


def crash_of(outcome: FitOutcome) -> str | None:
    """Why a fit search answers nothing, when that is because its trials crashed: none probed a
    model and at least one failed with an error other than running out of memory. None
    otherwise (a search whose probes ran answers, even if some crashed)."""
    if any(c.probe is not None for c in outcome.candidates):
        return None
    errors = [
        str(r.variables.get("trial.error") or "an error not recorded")
        for r in outcome.records
        if r.status is TrialStatus.ERROR
    ]
    crashes = [e for e in errors if not _MEMORY.search(e)]
    if not crashes:
        return None
    return (
        f"{len(crashes)} fit trial(s) crashed and none probed a model, so the stage has no "
        f"answer; the first crash: {crashes[0]}"
    )


_MEMORY = re.compile(r"out of memory|OutOfMemory", re.IGNORECASE)


def fit_searcher(
    policy: Policy,
    ctx: PolicyContext,
    grid: list[dict[str, Any]],
    seed: int,
    previous: list[dict[str, Any]],
    capacity: Callable[[dict[str, Any]], float],
) -> ProbeSearcher:
    """The fit search's searcher: TPE over the grid's choices, starting from the points the
    stage's policy gives (``Policy.seed_points``), and answering what it can without a probe
    (``Policy.bound`` of a model's parameter count, which costs no probe)."""
    choices = {k: sorted({g[k] for g in grid}) for k in grid[0]}
    points = policy.seed_points(choices, previous)
    inner = HyperOptSearch(
        space=HyperOptSearch.convert_search_space({k: tune.choice(v) for k, v in choices.items()}),
        metric=SCORE,
        mode="max",
        points_to_evaluate=points or None,
        n_initial_points=max(2, min(5, len(grid) // 4)),
        gamma=0.5,
        random_state_seed=seed,
    )

    def bound(knobs: dict[str, Any]) -> float | None:
        return policy.bound(capacity(knobs), ctx)

    return ProbeSearcher(inner, grid, SCORE, no_memory_failure, bound=bound)


def capacity_of(model: dict[str, Any]) -> float:
    """Trainable parameters of a model spec, counted on the meta device (no memory, no probe);
    infinite for a spec that is not a valid model, so that it is probed and reported."""
    try:
        spec = ModelSpec.model_validate(model)
    except ValidationError:
        return math.inf
    with torch.device("meta"):
        return float(count_parameters(build_model(spec)))


def _describe_probe(result: dict[str, Any], memory_fraction: float = 1.0) -> str:
    return probe_words(result.get("config", {}), FitReport.of_metrics(result), memory_fraction)


def _best_probe(results: list[dict[str, Any]], unit: str = "") -> Best | None:
    scored = [r for r in results if r.get(SCORE)]
    if not scored:
        return None
    best = max(scored, key=lambda r: r[SCORE])
    config = dict(best.get("config") or {})
    return Best(config=config, metric="score", value=float(best[SCORE]), unit=unit, goal="max")
