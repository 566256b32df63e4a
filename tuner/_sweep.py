"""Sweeps: ``stagetune train -m optimizer=adamw,sgd optimizer.lr=1e-4,1e-3`` trains every
combination of the listed values, each a trial of one Ray Tune grid search, with ASHA stopping
runs early on request.

Every combination is composed (and its optimizer and schedule built) before any trial starts,
so an unknown key or choice, or a value torch refuses, is an error naming it while nothing has
run. Each run trains with ``model.run_training`` into the sweep's ``train.output_dir``, as
``stagetune train`` does: ``<hash[:12]>/config.json``, ``metrics.json``, ``model.pt`` and an
entry in ``audit.md`` (a run ASHA stopped gets its config.json and entry from the driver). The
sweep's own folder, ``<output_dir>/sweeps/<id>/``, holds ``sweep.csv`` (one row per run: the
swept values, its rank, status and figures), ``progress.json`` and the Tune experiment
(``ray/``). The output folder must be one every node can write when the cluster has several.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from model import (
    ConfigError,
    RunStopped,
    TrainConfig,
    append_audit_entry,
    build_model,
    build_optimizer,
    build_scheduler,
    export_config,
    load_train_config,
    run_training,
    split_sweep,
)
from stagetune_api import JobSpec, TrialStatus, new_job_id, write_atomic
from tuner._cluster import connected, trial_resources
from tuner._experiment import Execution, Interrupted, run_experiment
from tuner._job import _explain
from tuner._progress import ProgressBoard, SearchProgress
from tuner._trials import epoch_metrics, trial_where

log = logging.getLogger(__name__)

#: The ``JobSpec`` fields a sweep takes: how each trial runs, as ``stagetune optimize`` has them.
SWEEP_FIELDS = ("cpus_per_trial", "gpus_per_trial", "accelerator_type", "max_concurrent",
                "grace_period", "reduction_factor")  # fmt: skip
MAX_RUNS = 10_000
_FIGURES = ("val_loss", "val_rmse", "val_pearson", "train_loss")


@dataclass(frozen=True)
class SweepRun:
    """One combination: the text of each swept value, and the configuration it composes to."""

    index: int
    values: dict[str, str]
    config: dict[str, Any]  # TrainConfig.to_dict(), output_dir absolute
    digest: str

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "(no list)"

    @property
    def epochs(self) -> int:
        return int(self.config["train"]["epochs"])

    @property
    def run_dir(self) -> Path:
        return Path(self.config["train"]["output_dir"]) / self.digest[:12]


@dataclass(frozen=True)
class SweepPlan:
    keys: tuple[str, ...]  # the swept keys, in the order given
    runs: tuple[SweepRun, ...]
    output_dir: Path


@dataclass(frozen=True)
class SweepOptions:
    """How the trials run. ``trials`` is a ``JobSpec`` for its ``SWEEP_FIELDS`` only, so they
    have a job's bounds, and one trial's resources are checked against the cluster as a job's."""

    trials: JobSpec = field(default_factory=lambda: JobSpec(job_id="sweep"))
    asha: bool = False
    measure_memory: bool = False

    @classmethod
    def of(
        cls, given: Mapping[str, Any], asha: bool = False, measure_memory: bool = False
    ) -> SweepOptions:
        """Options from ``SWEEP_FIELDS`` values (None: not given, the job's default)."""
        unknown = sorted(set(given) - set(SWEEP_FIELDS))
        if unknown:
            raise ConfigError(f"not sweep options: {', '.join(unknown)}; accepted: "
                              f"{', '.join(SWEEP_FIELDS)}")  # fmt: skip
        values = {k: v for k, v in given.items() if v is not None}
        try:
            trials = JobSpec.model_validate({"job_id": "sweep", **values})
        except ValidationError as exc:
            raise ConfigError("invalid sweep options:\n  " + "\n  ".join(_explain(exc))) from None
        return cls(trials, asha, measure_memory)


@dataclass
class SweepResult:
    sweep_id: str
    folder: Path
    keys: tuple[str, ...]
    rows: list[dict[str, Any]]  # one per run, in run order, with its rank

    @property
    def sweep_csv(self) -> Path:
        return self.folder / "sweep.csv"

    def ranked(self) -> list[dict[str, Any]]:
        return sorted(self.rows, key=lambda r: r["rank"])


def plan_sweep(
    overrides: Sequence[str],
    profile: str | Path | Mapping[str, Any] | None = None,
    config_dir: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Every combination of the listed values (``key=a,b,c``; see ``model.split_sweep``),
    composed as ``stagetune train`` composes one, and checked before anything runs."""
    split = [split_sweep(text) for text in overrides]
    keys = [key for key, values in split if len(values) > 1]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"{', '.join(twice)}: listed twice; give each swept key one list")
    if "train.output_dir" in keys:
        raise ConfigError("train.output_dir cannot be swept: a sweep writes to one folder "
                          "(--output)")  # fmt: skip
    count = math.prod(len(values) for _, values in split)
    if count > MAX_RUNS:
        raise ConfigError(f"the lists make {count:,} runs; a sweep runs at most {MAX_RUNS:,}")
    runs: list[SweepRun] = []
    seen: dict[str, SweepRun] = {}
    models: dict[str, torch.nn.Module] = {}
    compose = partial(load_train_config, profile=profile, config_dir=config_dir, settings=settings)
    for index, chosen in enumerate(itertools.product(*(values for _, values in split))):
        values = {k: v for (k, vs), v in zip(split, chosen, strict=True) if len(vs) > 1}
        texts = [f"{k}={v}" for (k, _), v in zip(split, chosen, strict=True)]
        run = _compose(index, values, partial(compose, texts), models)
        if run.digest in seen:
            raise ConfigError(f"{seen[run.digest].label} and {run.label} compose the same "
                              f"configuration: list each value once")  # fmt: skip
        seen[run.digest] = run
        runs.append(run)
    output_dir = Path(runs[0].config["train"]["output_dir"])
    return SweepPlan(tuple(keys), tuple(runs), output_dir)


def _compose(
    index: int, values: dict[str, str], compose: Callable[[], TrainConfig], models: dict[str, Any]
) -> SweepRun:
    """One combination as a checked configuration, its paths made absolute (trials run in
    folders of their own)."""
    label = " ".join(f"{k}={v}" for k, v in values.items())
    try:
        config = compose()
        tree = config.to_dict()
        for section, key in (("train", "output_dir"), ("optimizer", "export_json")):
            if isinstance(tree[section][key], str):
                tree[section][key] = str(Path(tree[section][key]).expanduser().resolve())
        config = TrainConfig.model_validate(tree)
        _check_builds(config, models)
    except ConfigError as exc:
        raise ConfigError(f"sweep run {label}: {exc}", exc.problems) from None
    return SweepRun(index, values, config.to_dict(), config.digest())


def _check_builds(config: TrainConfig, models: dict[str, torch.nn.Module]) -> None:
    """torch's own checks of the optimizer's values (a negative lr, nesterov without momentum)
    and of the schedule, on the run's model, before any trial starts."""
    key = config.model.model_dump_json()
    if key not in models:
        models[key] = build_model(config.model)
    optimizer = build_optimizer(config.optimizer, models[key], torch.device("cpu"))
    build_scheduler(config.scheduler, config.optimizer, optimizer, total_steps=10)


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares: each run's configuration, composed by the driver."""

    configs: tuple[dict[str, Any], ...]
    measure_memory: bool = False


def sweep_trial(config: dict[str, Any], ctx: SweepContext) -> None:
    """Ray Tune function trainable of a sweep: one run of ``run_training``, one report per
    epoch (for ASHA and the summary). The last epoch is reported once the run has written its
    files: Tune may end a trial at its last report (ASHA does, at ``max_t``), and the run's
    trail must not depend on how fast the files are written. A run Tune ends before (its
    ``report`` exits) is recorded by the driver (``_trail_of_stopped``), not as a failure."""
    train_config = TrainConfig.model_validate(ctx.configs[config["run"]])
    where = trial_where()
    last: list[dict[str, Any]] = []

    def report(m: Any) -> None:
        metrics = epoch_metrics(m, train_config, where)
        if m.epoch == train_config.train.epochs:
            last.append(metrics)
            return
        try:
            tune.report(metrics)
        except SystemExit:  # Tune ends the trial this way (ASHA): the driver records the run
            raise RunStopped(f"stopped after epoch {m.epoch}") from None

    try:
        run_training(train_config, on_epoch=report, measure_memory=ctx.measure_memory)
    except RunStopped:
        sys.exit(0)  # as Tune asked
    if last:
        tune.report(last[-1])


def run_sweep(
    plan: SweepPlan,
    options: SweepOptions | None = None,
    address: str | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Run every combination of ``plan`` as one Tune grid search on the Ray cluster this process
    is connected to, the one at ``address``, or a new local one; write ``sweep.csv``. Ray
    Tune's own output goes to the sweep's ``sweep.log`` unless ``verbose``."""
    options = options or SweepOptions()
    sweep_id = new_job_id()
    folder = plan.output_dir / "sweeps" / sweep_id
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    max_epochs = max(run.epochs for run in plan.runs)
    log.info("sweep %s: %d runs in %s", sweep_id, len(plan.runs), folder)
    ctx = SweepContext(tuple(run.config for run in plan.runs), options.measure_memory)
    with connected(address, verbose):
        resources = trial_resources(options.trials)
        log.info("each trial holds %s; at most %d at once", resources,
                 options.trials.max_concurrent)  # fmt: skip
        board = ProgressBoard(folder / "progress.json", started)
        board.update("sweep", sweep_id, {"total": len(plan.runs)})
        progress = SearchProgress("sweep", sweep_id, board, _describer(plan), _best,
                                  max_t=max_epochs, total=len(plan.runs))  # fmt: skip
        execution = Execution(resources, options.trials.max_concurrent, folder, seed=0,
                              max_failures=0,  # a failed run would fail again
                              tune_output=None if verbose else folder / "sweep.log")  # fmt: skip
        try:
            results = run_experiment(
                "ray", tune.with_parameters(sweep_trial, ctx=ctx), execution, progress,
                tune.TuneConfig(
                    scheduler=_asha(options.trials, max_epochs) if options.asha else None,
                    max_concurrent_trials=options.trials.max_concurrent, reuse_actors=True,
                ),
                param_space={"run": tune.grid_search([run.index for run in plan.runs])},
            )  # fmt: skip
        except Interrupted:
            raise KeyboardInterrupt(
                f"sweep {sweep_id} interrupted; finished runs are in {plan.output_dir}"
            ) from None
    rows = [_row(plan, result) for result in results]
    rows = _ranked(sorted(rows, key=lambda r: r["run"]))
    for run, result in zip(plan.runs, sorted(results, key=_run_of), strict=True):
        _trail_of_stopped(run, result)
    swept = SweepResult(sweep_id, folder, plan.keys, rows)
    write_atomic(swept.sweep_csv, sweep_csv(swept))
    log.info("sweep %s finished in %.0f s: %s", sweep_id, time.time() - started, swept.sweep_csv)
    return swept


def _asha(trials: JobSpec, max_epochs: int) -> ASHAScheduler:
    return ASHAScheduler(time_attr="training_iteration", metric="val_loss", mode="min",
                         max_t=max_epochs, grace_period=min(trials.grace_period, max_epochs),
                         reduction_factor=trials.reduction_factor)  # fmt: skip


def _run_of(result: Any) -> int:
    return int(result.config["run"])


def _status(run: SweepRun, result: Any) -> TrialStatus:
    epochs = (result.metrics or {}).get("training_iteration") or 0
    if result.error:
        return TrialStatus.ERROR
    return TrialStatus.COMPLETED if epochs >= run.epochs else TrialStatus.STOPPED_EARLY


def _row(plan: SweepPlan, result: Any) -> dict[str, Any]:
    run = plan.runs[_run_of(result)]
    metrics = result.metrics or {}
    figures = {k: metrics.get(k) for k in _FIGURES}
    return {
        "run": run.index + 1,
        **{key: run.values[key] for key in plan.keys},
        "status": _status(run, result).value,
        "epochs": metrics.get("training_iteration") or 0,
        **{k: v if isinstance(v, float) and math.isfinite(v) else None for k, v in figures.items()},
        "seconds": round(float(metrics.get("time_total_s") or 0.0), 1),
        "config_hash": run.digest,
        "run_dir": str(run.run_dir),
        "node_id": metrics.get("node_id"),
    }


def _ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with its rank: by validation loss, lowest first; runs without one last."""
    order = sorted(rows, key=lambda r: (r["val_loss"] is None, r["val_loss"] or 0.0, r["run"]))
    ranks = {r["run"]: i for i, r in enumerate(order, start=1)}
    return [{**r, "rank": ranks[r["run"]]} for r in rows]


def _trail_of_stopped(run: SweepRun, result: Any) -> None:
    """A run ASHA stopped never returned from ``run_training``: its configuration and audit
    entry are written here, so every run of the sweep leaves the trail a finished one does."""
    if _status(run, result) is not TrialStatus.STOPPED_EARLY:
        return
    config = TrainConfig.model_validate(run.config)
    metrics = result.metrics or {}
    export_config(config, run.run_dir)
    note = (f"stopped early by ASHA after {metrics.get('training_iteration')} of {run.epochs} "
            f"epochs: val_loss={metrics.get('val_loss', float('nan')):.4f} (sweep run "
            f"{run.label})")  # fmt: skip
    append_audit_entry(run.run_dir.parent / "audit.md", config, run.run_dir, None, None, note)


def sweep_csv(result: SweepResult) -> str:
    """One row per run: its number, one column per swept key (the value as given), rank,
    status, epochs run, the last validation figures, seconds, hash and run folder."""
    columns = ["run", *result.keys, "rank", "status", "epochs", *_FIGURES, "seconds",
               "config_hash", "run_dir", "node_id"]  # fmt: skip
    with io.StringIO(newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return f.getvalue()


def summary_table(result: SweepResult) -> str:
    """The runs by validation loss, lowest first, as a table for people."""
    head = ["rank", *result.keys, "val_loss", "val_rmse", "val_pearson", "epochs", "status",
            "run"]  # fmt: skip
    lines = [head]
    for r in result.ranked():
        figures = [_shown(r[k]) for k in ("val_loss", "val_rmse", "val_pearson")]
        lines.append([str(r["rank"]), *(r[k] for k in result.keys), *figures, str(r["epochs"]),
                      r["status"], Path(r["run_dir"]).name])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def _describer(plan: SweepPlan) -> Any:
    def describe(result: dict[str, Any]) -> str:
        run = plan.runs[int((result.get("config") or {}).get("run", 0))]
        loss = _shown(result.get("val_loss"))
        return f"{run.label}: val_loss {loss} after {result.get('training_iteration')} epoch(s)"

    return describe


def _best(results: list[dict[str, Any]]) -> str | None:
    losses = [r["val_loss"] for r in results if isinstance(r.get("val_loss"), float)]
    return f"val_loss {min(losses):.4f}" if losses else None
