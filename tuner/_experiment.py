"""What the searches and sweeps share: how trials run (``Execution``), one Ray Tune experiment
run or restored (``run_experiment``), ASHA and the progress of trials that train on validation
loss (``asha``, ``training_progress``, ``trained_status``), and a finished trial as a
``TrialRecord`` with flat variables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

from stagetune_api import (
    Best,
    EpochReport,
    FitReport,
    Search,
    Stage,
    TrainedReport,
    TrialRecord,
    TrialStatus,
    Where,
)
from tuner._progress import ProgressBoard, SearchProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Execution:
    """How trials run: resources of one trial, concurrency, retries, where experiments live."""

    resources: dict[str, float]
    max_concurrent: int
    storage: Path
    seed: int
    max_failures: int = 2
    #: where Ray Tune's own output (its tables, hints and log lines) goes: a file (the job's
    #: log), or None for the terminal
    tune_output: Path | None = None
    tune_table: bool = False  # Ray Tune's trial table, every few seconds, in that output


class Interrupted(KeyboardInterrupt):
    """A search stopped by Ctrl-C (SIGINT): Ray Tune saved its experiment, and the same job id
    run again resumes it."""


def run_experiment(
    name: str,
    trainable: Any,
    execution: Execution,
    progress: SearchProgress,
    tune_config: tune.TuneConfig,
    param_space: dict[str, Any] | None = None,
) -> list[Any]:
    """Run (or resume) one Tune experiment; its trials as ``Result`` objects, in the order of
    their folders. ``param_space``: a grid (``tune.grid_search``) instead of a searcher's
    suggestions. ``Interrupted`` when Ctrl-C stopped it (Tune saves the experiment first)."""
    trainable = tune.with_resources(
        named(trainable, f"{progress.stage}-{progress.search}"),
        tune.PlacementGroupFactory([execution.resources]),
    )
    path = execution.storage / name
    with _tune_output(execution.tune_output):  # Ray's own words on what it restores: the log
        tuner = _restored(name, path, trainable)
    if tuner is None:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(execution.storage),
                failure_config=tune.FailureConfig(max_failures=execution.max_failures),
                callbacks=[progress],
                verbose=1 if execution.tune_table else 0,
            ),
        )
    with _tune_output(execution.tune_output), _interrupts() as interrupted:
        grid = tuner.fit()
        stopped = interrupted()
    if stopped:
        raise Interrupted(f"{name} was interrupted; its experiment is saved in {path}")
    return sorted((grid[i] for i in range(len(grid))), key=lambda r: str(r.path))


def named(trainable: Any, label: str) -> Any:
    """A function trainable (from ``tune.with_parameters``, a fresh function each call) named
    for what its trials do, such as ``validation-fit``: Ray Tune names the trials, their actors'
    ``repr`` and their lines in the logs after it, so the dashboard's Actors view and a trial's
    log say which stage and search a worker serves. Its actors also set up as ``TrialWorker``
    does (Ray Tune's ``__mixins__``: classes its actor class inherits)."""
    trainable.__name__ = trainable.__qualname__ = label
    trainable.__mixins__ = (TrialWorker,)
    return trainable


class TrialWorker:
    """What a trial's actor does first, in its own main thread, before Ray Tune starts the
    trial's function in a thread of its own: the profiler made quiet (``KINETO_LOG_LEVEL``
    unless set, and started once here: started first in another thread, it prints an error
    line), and the package's log lines written to the actor's output, which the dashboard
    shows as the trial's log."""

    def setup(self, config: dict[str, Any]) -> None:
        quiet_profiler()
        trial_log()
        super().setup(config)  # type: ignore[misc]


def quiet_profiler() -> None:
    import torch  # a trial's worker has it; the driver need not start the profiler

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        pass


def trial_log() -> None:
    """The ``tuner`` and ``model`` loggers' INFO lines on this process's stderr, once."""
    if any(getattr(h, "stagetune_trial", False) for h in logging.getLogger("tuner").handlers):
        return
    handler = logging.StreamHandler(sys.stderr)  # stdout: Ray forwards it where answers go
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.stagetune_trial = True  # type: ignore[attr-defined]
    for name in ("tuner", "model"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@contextlib.contextmanager
def _interrupts() -> Iterator[Callable[[], bool]]:
    """Whether Ctrl-C (SIGINT) stopped the experiment. Tune catches it while it runs, stops the
    trials, saves the experiment and returns as if it had finished (every trial marked
    terminated); its handler puts back the one it found, which is this one, so finding this
    handler again afterwards means Tune caught a signal. Afterwards the process's own handler is
    put back (Tune leaves its own behind), so a Ctrl-C between searches stops the job too."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # no signal reaches this thread
        return
    caught: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:  # when Tune does not catch it itself
        caught.append(signum)
        raise KeyboardInterrupt

    tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") in ("", "0")
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield (
            lambda: bool(caught) or (tune_catches and signal.getsignal(signal.SIGINT) is on_sigint)
        )
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _tune_output(path: Path | None) -> Iterator[None]:
    """Ray Tune prints its experiment tables and hints and logs through ``ray.tune``: with
    ``path``, both go to that file (the job's log) instead of the terminal."""
    if path is None:
        yield
        return
    tune_log = logging.getLogger("ray.tune")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    propagate = tune_log.propagate
    tune_log.addHandler(handler)
    tune_log.propagate = False
    try:
        with open(path, "a") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        tune_log.removeHandler(handler)
        tune_log.propagate = propagate
        handler.close()


def _restored(name: str, path: Path, trainable: Any) -> tune.Tuner | None:
    """The interrupted experiment at ``path``, or None when there is none. One that cannot be
    restored (pickled by an earlier version of stagetune, whose modules have moved) is set aside
    and its search starts afresh: the job goes on, at the cost of the search's probes."""
    if not tune.Tuner.can_restore(str(path)):
        return None
    log.info(
        "%s: resuming the experiment in %s; trials interrupted before their first result run "
        "again (Ray Tune's notes on them are in the job's log)",
        name,
        path,
    )
    try:
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
    except Exception as exc:
        aside = path.with_name(f"{path.name}.unrestorable-{int(time.time())}")
        path.rename(aside)
        log.warning(
            "%s: the interrupted experiment cannot be restored (%s: %s); it is kept in %s and "
            "the search starts afresh",
            name,
            type(exc).__name__,
            str(exc).splitlines()[0],
            aside,
        )
        return None


def asha(max_t: int, grace_period: int, reduction_factor: float) -> ASHAScheduler:
    """ASHA on validation loss, a rung an epoch; ``grace_period`` at most ``max_t``."""
    return ASHAScheduler(
        time_attr="training_iteration",
        metric="val_loss",
        mode="min",
        max_t=max_t,
        grace_period=min(grace_period, max_t),
        reduction_factor=reduction_factor,
    )


def trained_status(error: Any, metrics: Mapping[str, Any] | None, epochs: int) -> TrialStatus:
    """A training trial's end: an error, every one of its ``epochs`` run, or stopped early."""
    if error:
        return TrialStatus.ERROR
    ran = (metrics or {}).get("training_iteration") or 0
    return TrialStatus.COMPLETED if ran >= epochs else TrialStatus.STOPPED_EARLY


def training_progress(
    stage: str,
    search: str,
    board: ProgressBoard,
    chosen: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]],
    max_t: int,
    total: int,
) -> SearchProgress:
    """The progress of trials that train and report validation loss each epoch. ``chosen``: a
    trial's last result -> its label in the log and what it chose (the best's ``config``)."""

    def describe(result: dict[str, Any]) -> str:
        report = EpochReport.of_metrics(result)
        loss = report.val_loss if report else None
        shown = f"{loss:.4f}" if finite(loss) else "-"
        epochs = report.epoch if report else 0
        return f"{chosen(result)[0]}: val_loss {shown} after {epochs} epoch(s)"

    def best(results: list[dict[str, Any]]) -> Best | None:
        reports = [(r, EpochReport.of_metrics(r)) for r in results]
        scored = [
            (r, report.val_loss) for r, report in reports if report and finite(report.val_loss)
        ]
        if not scored:
            return None
        top, loss = min(scored, key=lambda pair: pair[1])
        return Best(config=chosen(top)[1], metric="val_loss", value=loss, unit="MSE", goal="min")

    board.update(stage, search, {"total": total})
    return SearchProgress(stage, search, board, describe, best, max_t=max_t, total=total)


def trial_record(
    stage: Stage,
    search: Search,
    result: Any,
    status: TrialStatus,
    variables: dict[str, Any],
    retries: Mapping[str, int],
    where: Where | None,
    *,
    fit: FitReport | None = None,
    trained: TrainedReport | None = None,
) -> TrialRecord:
    """A finished trial (Tune's ``Result``) as the job records it: what it tried
    (``variables``) and its figures (``fit`` or ``trained``); ``where``: its report."""
    metrics = result.metrics or {}
    trial_id = str(metrics["trial_id"])
    return TrialRecord(
        stage=stage,
        search=search,
        trial_id=trial_id,
        status=status,
        variables=variables,
        node_id=where.node_id if where else None,
        retries=retries.get(trial_id, 0),
        seconds=float(metrics.get("time_total_s") or 0.0),
        started=where.started if where else 0.0,
        fit=fit,
        trained=trained,
    )


def prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys; a list as its JSON text."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


def training_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's figures depend on beyond its own knobs: the data and the training loop."""
    data, train, optimizer = config["data"], config["train"], config["optimizer"]
    return {
        "data.source": data["source"],
        "data.max_atoms": data["max_atoms"],
        "train.precision": train["precision"],
        "train.accumulate_steps": optimizer["accumulate_steps"],
        "train.base_optimizer": optimizer["name"],
    }


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
