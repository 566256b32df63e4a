"""What one Ray Tune trial does: probe an architecture (fit search), or train with a set of
hyperparameters and report validation loss each epoch (tune search).

Each trial gets everything it needs in a frozen context, composed once by the driver: worker
nodes read no configuration files, so a node that has the package installed can run any trial.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from pydantic import ValidationError
from ray import tune

from model import ConfigError, TrainConfig, load_dataset, run_training
from stagetune_api import EpochFigures, EpochReport, FitReport, limit_words
from tuner._hardware import Device, device_for, discover, format_size
from tuner._on_data import on_data
from tuner._probe import Probe, ProbeResult, ProbeSample
from tuner._progress import short
from tuner._stages import Stage, StagesConfig, merge_tree
from tuner._tune_space import apply_hyperparameters
from tuner.policies import DataStats, PolicyContext, policy_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitContext:
    """What every probe of one stage's fit search shares."""

    stage: Stage
    stages: StagesConfig
    train_config: dict[str, Any]  # the composed training config; trials replace model knobs
    max_atoms: int
    sample: str | None
    memory_budget: str | None
    data: DataStats = field(default_factory=DataStats)  # production's data limits

    @property
    def policy(self) -> PolicyContext:
        return PolicyContext.of(self.stage, self.stages, self.data)


@dataclass(frozen=True)
class TuneContext:
    """What every training trial of one stage's tune search shares."""

    stage: Stage
    configs: dict[str, dict[str, Any]]  # "optimizer/scheduler" -> composed training config
    max_epochs: int
    pinned: frozenset[str] = frozenset()  # optimizer keys the job sets: not searched


def trial_device(memory_budget: str | None) -> Device:
    """The trial's GPU when Ray gave it one and CUDA sees it, else the CPU under the budget.

    A node that declares GPUs CUDA cannot see (a test cluster, a misconfigured node) probes on
    its CPU; the result names the device, so such an answer is never mistaken for a GPU's.
    """
    hardware = discover(memory_budget)
    if ray.is_initialized() and ray.get_gpu_ids():
        if hardware.gpus:
            return device_for(hardware, "cuda:0")
        log.warning("Ray assigned GPU %s but CUDA sees none: probing on the CPU", ray.get_gpu_ids())
    return device_for(hardware, "cpu")


def probe_configuration(knobs: dict[str, Any], ctx: FitContext) -> FitReport:
    """Probe one architecture: what the fit trial reports."""
    where = trial_where()
    try:
        config = TrainConfig.model_validate(merge_tree(ctx.train_config, {"model": knobs}))
    except ValidationError as exc:
        reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        return FitReport(score=0.0, fits=False, feasible=False, invalid=reason, **where)
    device = trial_device(ctx.memory_budget)
    sample = (
        ProbeSample.from_folder(ctx.sample, ctx.max_atoms)
        if ctx.sample
        else ProbeSample.synthetic(
            ctx.max_atoms, config.model.cutoff, config.model.max_num_neighbors
        )
    )
    stages, policy = ctx.stages, ctx.policy
    with Probe(config, device, sample, stages.memory_fraction, stages.cycle_batches) as probe:
        result = probe.find_max_batch(stages.max_batch_size)
        if result.max_atoms_per_batch is not None:
            result = _on_job_data(probe, result, config)
    score = policy_for(policy.spec).score_of(knobs, result, policy)
    return FitReport(
        score=score,
        fits=result.fits_at(stages.min_batch_size),
        feasible=score > 0,
        config_hash=config.digest(),
        probe=result,
        device=device.name,
        device_model=device.model,
        **where,
    )


def _on_job_data(probe: Probe, result: ProbeResult, config: TrainConfig) -> ProbeResult:
    """The probe's answer with its figures on the job's own training complexes (synthetic or a
    PDBbind root) at its atom budget; without them, with a warning, if the data cannot be used
    (the stage's time rule then judges the worst case)."""
    try:
        complexes = load_dataset(config).train
        figures = on_data(probe, complexes, result, seed=config.train.seed)
    except ConfigError as exc:
        log.warning("the probe's figures on the job's data are left out: %s", exc)
        return result
    return dataclasses.replace(result, data=figures, probe_steps=probe.steps)


def fit_trial(config: dict[str, Any], ctx: FitContext) -> None:
    """Ray Tune function trainable of the fit search: one probe, one report (and both in the
    trial's log)."""
    knobs = dict(config)
    log.info("%s fit: probing %s", ctx.stage.value, short(knobs))
    report = probe_configuration(knobs, ctx)
    log.info("%s fit: %s", ctx.stage.value, probe_words(knobs, report, ctx.stages.memory_fraction))
    tune.report(report.metrics())


def probe_words(knobs: dict[str, Any], report: FitReport | None, memory_fraction: float) -> str:
    """A probe's answer in a line: the knobs, then its batch, speed and peak, or why none."""
    tried, probe = short(knobs), probe_of(report)
    if report is not None and report.invalid:
        return f"{tried}: not a valid model ({report.invalid})"
    if probe is None or not probe.fits:
        return f"{tried}: does not fit in memory at batch 1"
    speed = (
        f"{probe.data.throughput:.1f} complexes/s on the data"
        if probe.data is not None
        else f"{probe.throughput or 0:.1f} samples/s"
    )
    return (
        f"{tried} ({probe.capacity:,} parameters): batch {probe.max_batch_size}, {speed}, "
        f"peak {format_size(probe.peak_bytes or 0)} of "
        f"{limit_words(probe.limit_bytes, memory_fraction)}"
    )


def no_memory_failure(result: dict[str, Any]) -> bool:
    """Whether a fit trial's result must not prune: it fit, or it was not a valid model at all
    (a model spec that cannot be built says nothing about the memory of larger ones)."""
    report = FitReport.of_metrics(result)
    return report is not None and (report.fits or report.invalid is not None)


def tune_trial(config: dict[str, Any], ctx: TuneContext) -> None:
    """Ray Tune function trainable of the tune search: one report per epoch, for ASHA."""
    tree = apply_hyperparameters(ctx.configs[config["pair"]], config)
    trial_dir = Path(tune.get_context().get_trial_dir())
    tree = merge_tree(
        tree,
        {
            "optimizer": {"log_config": False},  # the job's records hold every trial's config
            "train": {"epochs": ctx.max_epochs, "output_dir": str(trial_dir / "runs")},
        },
    )
    train_config = TrainConfig.model_validate(tree)
    where = trial_where()
    log.info(
        "%s tune: training %s for up to %d epochs", ctx.stage.value, short(config), ctx.max_epochs
    )

    def report(m: Any) -> None:
        tune.report(epoch_metrics(m, train_config, where))

    run_training(train_config, on_epoch=report)  # each epoch's figures in the log as it ends


def probe_of(report: FitReport | None) -> ProbeResult | None:
    """The probe result of a fit trial's report, or None (an invalid model, a crash)."""
    return report.probe if report else None


def epoch_metrics(m: EpochFigures, config: TrainConfig, where: dict[str, Any]) -> dict[str, Any]:
    """An epoch's figures as a training trial reports them to Tune (``EpochReport``), with its
    configuration's hash and where it runs."""
    pearson = m.val_pearson
    return EpochReport(
        epoch=m.epoch,
        val_loss=math.nan if m.val_loss is None else m.val_loss,
        val_rmse=m.val_rmse,
        val_pearson=pearson if pearson is not None and math.isfinite(pearson) else None,
        train_loss=m.train_loss,
        config_hash=config.digest(),
        val_loss_se=m.val_loss_se,
        val_baseline_loss=m.val_baseline_loss,
        val_gain_se=m.val_gain_se,
        val_complexes=m.val_complexes,
        **where,
    ).metrics()


def trial_where() -> dict[str, Any]:
    """The node a trial runs on and when it started, for the records (Tune adds its address
    and pid)."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"node_id": node, "started": time.time()}
