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
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from model import (
    RunStopped,
    TrainConfig,
    append_audit_entry,
    export_config,
    run_training,
)
from stagetune_api import EpochReport, RunFiles, SweepFiles, TrialStatus, new_job_id, write_atomic
from tuner._cluster import connected, trial_resources
from tuner._experiment import (
    Execution,
    Interrupted,
    asha,
    run_experiment,
    trained_status,
    training_progress,
)
from tuner._metrics import JobMetrics
from tuner._progress import ProgressBoard
from tuner._sweep_plan import SweepOptions, SweepPlan, SweepRun
from tuner._trials import epoch_metrics, trial_where

log = logging.getLogger(__name__)

_FIGURES = ("val_loss", "val_rmse", "val_pearson", "train_loss")


@dataclass
class SweepResult:
    sweep_id: str
    folder: Path
    keys: tuple[str, ...]
    rows: list[dict[str, Any]]  # one per run, in run order, with its rank

    @property
    def sweep_csv(self) -> Path:
        return SweepFiles(self.folder).table

    def ranked(self) -> list[dict[str, Any]]:
        return sorted(self.rows, key=lambda r: r["rank"])


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
    log.info("sweep run %s: training for %d epochs", config["run"], train_config.train.epochs)

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
        log.info(
            "each trial holds %s; at most %d at once", resources, options.trials.max_concurrent
        )
        board = ProgressBoard(SweepFiles(folder).progress_json, started, JobMetrics(sweep_id))
        progress = training_progress(
            "sweep", sweep_id, board, _chosen(plan), max_t=max_epochs, total=len(plan.runs)
        )
        execution = Execution(
            resources,
            options.trials.max_concurrent,
            folder,
            seed=0,
            max_failures=0,  # a failed run would fail again
            tune_output=None if verbose else SweepFiles(folder).log,
        )
        try:
            results = run_experiment(
                SweepFiles.EXPERIMENT,
                tune.with_parameters(sweep_trial, ctx=ctx),
                execution,
                progress,
                tune.TuneConfig(
                    scheduler=_asha(options, max_epochs),
                    max_concurrent_trials=options.trials.max_concurrent,
                    reuse_actors=True,
                ),
                param_space={"run": tune.grid_search([run.index for run in plan.runs])},
            )
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


def _asha(options: SweepOptions, max_epochs: int) -> ASHAScheduler | None:
    """ASHA when asked for, with the options' grace period and reduction factor."""
    if not options.asha:
        return None
    return asha(max_epochs, options.trials.grace_period, options.trials.reduction_factor)


def _run_of(result: Any) -> int:
    return int(result.config["run"])


def _status(run: SweepRun, result: Any) -> TrialStatus:
    return trained_status(result.error, result.metrics, run.epochs)


def _row(plan: SweepPlan, result: Any) -> dict[str, Any]:
    run = plan.runs[_run_of(result)]
    metrics = result.metrics or {}
    report = EpochReport.of_metrics(metrics)
    figures = {k: getattr(report, k, None) for k in _FIGURES}
    return {
        "run": run.index + 1,
        **{key: run.values[key] for key in plan.keys},
        "status": _status(run, result).value,
        "epochs": report.epoch if report else 0,
        **{k: v if isinstance(v, float) and math.isfinite(v) else None for k, v in figures.items()},
        "seconds": round(float(metrics.get("time_total_s") or 0.0), 1),
        "config_hash": run.digest,
        "run_dir": str(run.run_dir),
        "node_id": report.node_id if report else None,
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
    note = (
        f"stopped early by ASHA after {metrics.get('training_iteration')} of {run.epochs} "
        f"epochs: val_loss={metrics.get('val_loss', float('nan')):.4f} (sweep run "
        f"{run.label})"
    )
    audit = RunFiles(run.run_dir.parent).audit_md
    append_audit_entry(audit, config, run.run_dir, None, None, note)


def sweep_csv(result: SweepResult) -> str:
    """One row per run: its number, one column per swept key (the value as given), rank,
    status, epochs run, the last validation figures, seconds, hash and run folder."""
    columns = [
        "run",
        *result.keys,
        "rank",
        "status",
        "epochs",
        *_FIGURES,
        "seconds",
        "config_hash",
        "run_dir",
        "node_id",
    ]
    with io.StringIO(newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return f.getvalue()


def summary_table(result: SweepResult) -> str:
    """The runs by validation loss, lowest first, as a table for people."""
    head = ["rank", *result.keys, "val_loss", "val_rmse", "val_pearson", "epochs", "status", "run"]
    lines = [head]
    for r in result.ranked():
        figures = [_shown(r[k]) for k in ("val_loss", "val_rmse", "val_pearson")]
        lines.append(
            [
                str(r["rank"]),
                *(r[k] for k in result.keys),
                *figures,
                str(r["epochs"]),
                r["status"],
                Path(r["run_dir"]).name,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def _chosen(plan: SweepPlan) -> Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]:
    """A run's label and its swept values, from a trial's result."""

    def chosen(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        run = plan.runs[int((result.get("config") or {}).get("run", 0))]
        return run.label, dict(run.values)

    return chosen
