"""A stage's answer as ``result.json`` records it, and the job's provenance.

``stage_result`` turns the policy's choice, the fit search's probe of it and the tune search's
best trial into a ``StageResult`` and writes the stage's profile (the job's own training config
with the chosen model, batch and hyperparameters).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from model import TrainConfig
from stagetune_api import (
    Batching,
    JobSpec,
    MeasuredOn,
    ProbeFigures,
    Provenance,
    Stage,
    StageBudget,
    StageResult,
    TrialRecord,
    ValidationFigures,
    Workers,
)
from tuner._fit import FitOutcome, knobs_key
from tuner._folder import JobFolder
from tuner._stages import StagesConfig, merge_tree
from tuner._tune import TuneOutcome, tune_verdict
from tuner._tune_space import apply_hyperparameters
from tuner.policies import StageChoice, policy_for


@dataclass(frozen=True)
class StageRun:
    """Everything one stage produced."""

    stage: Stage
    choice: StageChoice
    fit: FitOutcome
    tuned: TuneOutcome | None
    configs: dict[str, dict[str, Any]]  # the tune search's training config per pair
    workers: Workers | None = None  # production: the data-parallel workers, measured


def stage_result(
    run: StageRun, spec: JobSpec, base: TrainConfig, stages: StagesConfig, folder: JobFolder
) -> StageResult:
    """The stage's record in result.json; a feasible one also writes its profile."""
    choice, fit, tuned = run.choice, run.fit, run.tuned
    probed = sum(c.probe is not None for c in fit.candidates)
    pruned = sum(c.probe is None for c in fit.candidates)
    budget = _budget(run.stage, stages)
    if not choice.feasible:
        return _unanswered(run, base, probed, pruned, budget)
    config, reason = _profile_config(run, base)
    batching = _batching(choice)
    summary = answer_words(config, batching)
    validation = _validation(tuned)
    said = {"validation": validation.verdict_words} if validation and validation.verdict else {}
    if run.workers is not None:
        said["workers"] = run.workers.words()
    profile = folder.write_profile(
        run.stage,
        config.to_dict(),
        {
            "description": f"stagetune {run.stage.value} configuration of job {spec.job_id}",
            "stage": run.stage.value,
            "job_id": spec.job_id,
            "reason": reason,
            "summary": summary,
            **said,
        },
    )
    where = fit.measured_on.get(knobs_key(choice.knobs), {})
    return StageResult(
        feasible=True,
        reason=reason,
        model=config.model.model_dump(mode="json"),
        batch_size=choice.batch_size,
        optimizer=config.optimizer.model_dump(mode="json"),
        scheduler=config.scheduler.model_dump(mode="json"),
        probe=_probe_figures(run),
        validation=validation,
        device=MeasuredOn(**where) if where else None,
        config_hash=config.digest(),
        profile=profile,
        probed=probed,
        pruned=pruned,
        budget=budget,
        batching=batching,
        summary=summary,
        workers=run.workers,
    )


def _unanswered(
    run: StageRun, base: TrainConfig, probed: int, pruned: int, budget: StageBudget
) -> StageResult:
    """A stage without an answer: why, and what its fit search tried."""
    return StageResult(
        feasible=False,
        reason=run.choice.reason,
        model={**base.model.model_dump(mode="json"), **run.choice.knobs},
        batch_size=None,
        optimizer={},
        scheduler={},
        probe=None,
        validation=None,
        device=None,
        config_hash=None,
        profile=None,
        probed=probed,
        pruned=pruned,
        budget=budget,
    )


def answer_words(config: TrainConfig, batching: Batching) -> str:
    """A stage's answer in one line: its model, what a training step holds, its optimizer."""
    model = " ".join(
        f"{k}={getattr(config.model, k)}" for k in ("hidden_channels", "num_layers", "num_rbf")
    )
    lr = config.optimizer.model_dump().get("lr")
    rate = f" lr {lr:.2e}" if isinstance(lr, int | float) else ""
    return (
        f"{model}; {batching.step_words()}; {config.optimizer.name}{rate}, {config.scheduler.name}"
    )


def _profile_config(run: StageRun, base: TrainConfig) -> tuple[TrainConfig, str]:
    """The stage's training config (the tune search's best trial, else the job's own config
    with the chosen model) and the reason the result gives for it."""
    reason = run.choice.reason
    tuned = run.tuned
    if tuned is not None and tuned.best is not None:
        tree = apply_hyperparameters(run.configs[tuned.best["pair"]], tuned.best)
    else:  # no tune search, or none of its trials trained: the job's own training config
        tree = merge_tree(base.to_dict(), {"model": run.choice.knobs})
        if tuned is not None:
            reason += "; no tune trial finished training, so the optimizer is the job's own"
    # the profile trains like the job's base config (epochs, output folder), not like a trial,
    # with the stage's batches: its atom budget when the probe found one, else its fixed count
    atoms = run.choice.on_data.max_atoms_per_batch if run.choice.on_data else None
    batch = run.choice.batch_size
    workers = run.workers
    if workers is not None and workers.count > 1:  # each GPU also holds what DDP adds
        atoms, batch = workers.atoms_per_worker, workers.batch_per_worker or batch
    train = {
        **base.train.model_dump(mode="json"),
        "batch_size": batch,
        "max_atoms_per_batch": atoms,
        "workers": workers.count if workers else 1,
    }
    return TrainConfig.model_validate({**tree, "train": train}), reason


def _probe_figures(run: StageRun) -> ProbeFigures:
    choice = run.choice
    candidate = next(
        c for c in run.fit.candidates if c.knobs == choice.knobs and c.probe is not None
    )
    probe = candidate.probe
    assert probe is not None
    return ProbeFigures(
        max_batch_size=probe.max_batch_size,
        peak_bytes=probe.peak_bytes,
        live_peak_bytes=probe.live_peak_bytes,
        heap_overhead=probe.heap_overhead,
        limit_bytes=probe.limit_bytes,
        step_seconds=choice.step_seconds,
        cycle_minutes=choice.cycle_minutes,
        throughput=choice.throughput,
        capacity=probe.capacity,
        probe_steps=probe.probe_steps,
        sample_atoms=probe.sample_atoms,
    )


def _batching(choice: StageChoice) -> Batching:
    assert choice.batch_size is not None
    data = choice.on_data
    return Batching(
        max_atoms_per_batch=data.max_atoms_per_batch if data else None,
        batch_size=choice.batch_size,
        complexes_per_batch=data.complexes_per_batch if data else None,
        step_seconds_on_data=data.step_seconds if data else None,
        cycle_minutes_on_data=data.cycle_minutes if data else None,
        throughput_on_data=data.throughput if data else None,
        step_spread_on_data=data.step_spread if data else None,
        cycle_minutes_worst_case=choice.cycle_minutes,
        peak_bytes_on_data=data.peak_bytes if data else None,
    )


def _validation(tuned: TuneOutcome | None) -> ValidationFigures | None:
    if tuned is None or tuned.metrics is None:
        return None
    metrics = tuned.metrics
    verdict = tune_verdict(tuned)
    return ValidationFigures(
        val_loss=metrics["val_loss"],
        val_rmse=metrics.get("val_rmse"),
        val_pearson=metrics.get("val_pearson"),
        epochs=metrics["training_iteration"],
        trials=tuned.trials,
        stopped_early=tuned.stopped_early,
        val_loss_se=metrics.get("val_loss_se"),
        baseline_loss=metrics.get("val_baseline_loss"),
        val_complexes=metrics.get("val_complexes"),
        tied=verdict.tied if verdict else None,
        verdict=verdict.verdict if verdict else None,
        verdict_words=verdict.words if verdict else None,
    )


def _budget(stage: Stage, stages: StagesConfig) -> StageBudget:
    spec = stages.stages[stage]
    return StageBudget(
        policy=spec.policy,
        minutes_allowed=spec.minutes_allowed,
        cycle_batches=stages.cycle_batches,
        min_batch_size=stages.min_batch_size,
        max_batch_size=stages.max_batch_size,
    )


def provenance(
    spec: JobSpec,
    started: float,
    finished: float,
    records: list[TrialRecord],
    resources: dict[str, float],
    stages: StagesConfig,
) -> Provenance:
    devices = resources.get("GPU") or 1.0
    return Provenance(
        versions=_versions(),
        seed=spec.seed,
        spec=spec.model_dump(mode="json"),
        started=_iso(started),
        finished=_iso(finished),
        elapsed_seconds=round(finished - started, 2),
        device_hours=round(sum(r.seconds for r in records) * devices / 3600.0, 6),
        reproducibility=reproducibility(spec, stages),
    )


def reproducibility(spec: JobSpec, stages: StagesConfig) -> list[str]:
    """What a rerun of ``spec`` with the same seed need not repeat, and why.

    With one trial at a time, each search sees its trials' results in the order the seed
    gives, and memory is measured exactly: the searches and the memory-bound answers repeat.
    Concurrent trials finish in an order that varies, and TPE and ASHA learn in that order.
    A stage ranked by throughput ranks by measured step times, which vary between runs."""
    notes = []
    if spec.max_concurrent > 1:
        notes.append(
            f"max_concurrent={spec.max_concurrent}: trials ran at the same time and finished in "
            "an order that varies between runs; the searches (TPE, ASHA) learn from results in "
            "that order, so they may try other configurations and choose others. With "
            "--max-concurrent 1 the order is the seed's."
        )
    timed = [s.value for s in spec.stages if policy_for(stages.stages[s]).ranks_by_time]
    if timed:
        notes.append(
            f"{', '.join(timed)}: ranked by measured throughput (step times vary between runs, "
            "a few percent on a quiet machine, more on a busy one): configurations within that "
            "of each other can swap, and the fit search follows the measured times to its next "
            "proposals."
        )
    return notes


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("stagetune", "torch", "torch-geometric", "ray", "hyperopt"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")
