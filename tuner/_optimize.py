"""``optimize``: a whole job, stage after stage, on a Ray cluster (a local one when none is given).

For each stage: the fit search (``tuner._fit``), the stage's policy over its candidates, then the
tune search (``tuner._tune``) for the chosen model and batch. The best configuration of a stage
seeds the next stage's fit search. Finished searches are saved in the job folder
(``tuner._folder``), so the same ``job_id`` run again resumes where the job stopped.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from model import TrainConfig
from stagetune_api import (
    JobResult,
    JobSpec,
    Provenance,
    Search,
    Stage,
    StageResult,
    TrialRecord,
)
from tuner._assembly import StageRun, provenance, stage_result
from tuner._cluster import cluster_hardware, connected, trial_resources
from tuner._data import JobData
from tuner._experiment import Execution
from tuner._fit import FitOutcome, TrialsCrashed, crash_of, run_fit
from tuner._folder import JobFolder
from tuner._job import check_resume, stages_config, train_config
from tuner._local import choose
from tuner._metrics import JobMetrics
from tuner._progress import ProgressBoard, short
from tuner._stages import StagesConfig, StageSpec, merge_tree
from tuner._trials import FitContext, TuneContext
from tuner._tune import TuneOutcome, run_tune
from tuner._tune_space import pair_configs, pinned_keys
from tuner._workers import stage_workers
from tuner.policies import StageChoice

log = logging.getLogger(__name__)

_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

T = TypeVar("T", FitOutcome, TuneOutcome)


def optimize(
    spec: JobSpec,
    address: str | None = None,
    output: Path | None = None,
    config_dir: Path | None = None,
    verbose: bool = False,
    session: str | None = None,
    tune_table: bool = False,
) -> JobResult:
    """Run (or resume) the job of ``spec``; its ``result.json`` as a ``JobResult``.

    Uses the Ray cluster this process is connected to, joins the one at ``address``, or starts a
    local one and shuts it down again. (The command line passes ``RAY_ADDRESS`` as ``address``,
    which is how a job started with ``ray job submit`` finds its cluster.) With ``session``, the
    cluster must be that Ray session (``tuner._cluster.WrongCluster`` otherwise, before anything
    runs). A job that finished
    before is assembled again from its saved searches (files of an earlier version gain the
    fields added since), keeping when it ran and how long it took. Ray Tune's own output and the
    workers' output go to the job's log, or, ``verbose``, to the terminal as well; with
    ``tune_table``, Ray Tune's trial table goes to the terminal (a submitted job's driver log)
    every few seconds, beside stagetune's own status lines. Ctrl-C stops
    the job (``KeyboardInterrupt``; the same job id resumes it), and a job stopped before it
    started leaves no folder.
    """
    started = time.time()
    folder = JobFolder.of(spec)
    check_resume(folder.job_json, spec)
    made = not folder.path.exists()  # a folder the service made holds its own files
    folder.create()
    try:
        with _job_log(folder.job_log):
            shown = _Shown(verbose, tune_table)
            result = _run_job(spec, folder, address, config_dir, started, shown, session)
    except KeyboardInterrupt:
        if made and not folder.job_json.is_file():  # nothing to resume
            shutil.rmtree(folder.path, ignore_errors=True)
        raise
    if output is not None:
        folder.copy_to(output)
    return result


def _first_run(folder: JobFolder, current: Provenance) -> Provenance:
    """``current``, with the times of the run that finished the job first, when it had."""
    if not folder.result_json.is_file():
        return current
    try:
        before = JobResult.model_validate_json(folder.result_json.read_text()).provenance
    except ValueError:
        return current
    log.info(
        "job %s finished before, in %.0f s: its times are kept",
        folder.path.name,
        before.elapsed_seconds,
    )
    times = ("started", "finished", "elapsed_seconds")
    return current.model_copy(update={k: getattr(before, k) for k in times})


@dataclass(frozen=True)
class _Shown:
    """What the terminal (a submitted job's driver log) shows beyond the job's own lines: the
    workers' output and Ray Tune's (``verbose``), Ray Tune's trial table (``tune_table``)."""

    verbose: bool
    tune_table: bool


def _run_job(
    spec: JobSpec,
    folder: JobFolder,
    address: str | None,
    config_dir: Path | None,
    started: float,
    shown: _Shown,
    session: str | None = None,
) -> JobResult:
    log.info("job %s in %s", spec.job_id, folder.path)
    stages = stages_config(spec, config_dir)
    base = train_config(spec, config_dir)
    with connected(address, shown.verbose, session):
        execution = Execution(
            trial_resources(spec),
            spec.max_concurrent,
            folder.experiments,
            spec.seed,
            tune_output=None if shown.verbose or shown.tune_table else folder.job_log,
            tune_table=shown.tune_table,
        )
        # the job exists once its spec passed every check: a refused one can be run again
        folder.write_spec(spec)
        execution.storage.mkdir(parents=True, exist_ok=True)
        log.info(
            "each trial holds %s; at most %d at once", execution.resources, spec.max_concurrent
        )
        board = ProgressBoard(folder.progress_json, started, JobMetrics(spec.job_id))
        loop = _StageLoop(spec, stages, base, execution, board, folder, config_dir)
        answers, records = loop.run()
        hardware = cluster_hardware(answers)
    finished = time.time()
    result = JobResult(
        job_id=spec.job_id,
        stages=answers,
        hardware=hardware,
        provenance=_first_run(
            folder, provenance(spec, started, finished, records, execution.resources, stages)
        ),
    )
    folder.write_result(result)
    folder.write_trials(records)
    folder.write_audit(result, records)
    log.info("job %s finished in %.0f s: %s", spec.job_id, finished - started, folder.result_json)
    return result


@contextmanager
def _job_log(path: Path) -> Iterator[None]:
    """The job's log file: every INFO line of the packages, whatever the console shows."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in ("tuner", "model")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    except KeyboardInterrupt as exc:
        log.info("job stopped by Ctrl-C: %s", str(exc) or "interrupted")
        raise
    except BaseException as exc:
        # the job's log says why it stopped; the console says it once, where the error is shown
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        handler.handle(
            log.makeRecord(log.name, logging.ERROR, "", 0, "job stopped: %s", (why,), None)
        )
        raise
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


class _StageLoop:
    """The job's stages in order, each a fit search, the policy's choice and a tune search."""

    def __init__(
        self,
        spec: JobSpec,
        stages: StagesConfig,
        base: TrainConfig,
        execution: Execution,
        board: ProgressBoard,
        folder: JobFolder,
        config_dir: Path | None,
    ) -> None:
        self.spec, self.stages, self.base = spec, stages, base
        self.execution, self.board, self.folder = execution, board, folder
        self.config_dir = config_dir
        self.records: list[TrialRecord] = []
        self.previous: list[dict[str, Any]] = []  # the best of the stages before
        self.data = JobData.read(base)

    def run(self) -> tuple[dict[Stage, StageResult], list[TrialRecord]]:
        answers = {}
        for stage in self.spec.stages:
            base = covering(self.base, self.data, self.stages.stages[stage], stage)
            run = self._stage(stage, base)
            answers[stage] = stage_result(run, self.spec, base, self.stages, self.folder)
        return answers, self.records

    def _stage(self, stage: Stage, base: TrainConfig) -> StageRun:
        spec = self.stages.stages[stage]
        data = self.data.stats(spec)
        fit_ctx = FitContext(
            stage=stage,
            stages=self.stages,
            train_config=base.to_dict(),
            max_atoms=base.data.max_atoms,
            sample=self.spec.sample,
            memory_budget=self.spec.memory_budget,
            data=data,
        )
        run = partial(
            run_fit, fit_ctx, self.spec.fit_trials, self.execution, self.board, self.previous
        )
        # a search whose trials crashed is not kept: the same job id tries it again
        fit = self._once(stage, Search.FIT, FitOutcome, run, keep=lambda f: crash_of(f) is None)
        self.records += fit.records
        crash = crash_of(fit)
        if crash is not None:
            raise TrialsCrashed(f"{stage.value}: {crash}")
        choice = choose(stage, self.stages, fit.candidates, data)
        log.info("%s: %s", stage.value, _say(choice))
        tuned: TuneOutcome | None = None
        configs: dict[str, dict[str, Any]] = {}
        workers = None
        if choice.feasible:
            self.previous = [choice.knobs]
            if self.spec.tune:
                tuned, configs = self._tune(stage, choice, base)
            if stage is Stage.PRODUCTION:
                cycle = self.stages.cycle_batches
                workers = stage_workers(self.folder, stage, choice, fit, base, cycle)
        return StageRun(stage, choice, fit, tuned, configs, workers)

    def _tune(
        self, stage: Stage, choice: StageChoice, base: TrainConfig
    ) -> tuple[TuneOutcome, dict[str, dict[str, Any]]]:
        assert choice.batch_size is not None
        atoms = choice.on_data.max_atoms_per_batch if choice.on_data else None
        configs = pair_configs(
            self.spec, base, choice.knobs, choice.batch_size, self.config_dir, atoms
        )
        ctx = TuneContext(stage, configs, self.spec.max_epochs, pinned_keys(self.spec))
        run = partial(
            run_tune,
            ctx,
            self.spec.tune_trials,
            self.execution,
            self.board,
            self.spec.grace_period,
            self.spec.reduction_factor,
        )
        tuned = self._once(stage, Search.TUNE, TuneOutcome, run, keep=lambda t: t.best is not None)
        self.records += tuned.records
        if tuned.best is None:
            log.warning(
                "%s: no tune trial reported a finite validation loss; the profile keeps the "
                "job's own optimizer settings",
                stage.value,
            )
        return tuned, configs

    def _once(
        self,
        stage: Stage,
        search: Search,
        kind: type[T],
        run: Callable[[], T],
        keep: Callable[[T], bool] = lambda _: True,
    ) -> T:
        """A search's saved outcome, or run it and save it (when ``keep``: an outcome not kept
        is run again when the job is resumed)."""
        saved = self.folder.saved_search(stage, search)
        if saved is not None:
            log.info("%s-%s: finished before, not run again", stage.value, search.value)
            return kind.from_json(saved)
        outcome = run()
        if keep(outcome):
            self.folder.save_search(stage, search, outcome.to_json())
        return outcome


def covering(base: TrainConfig, data: JobData, spec: StageSpec, stage: Stage) -> TrainConfig:
    """The stage's training config with a ``data.max_atoms`` that covers the job's complexes at
    the stage's ``max_atoms_percentile``: a smaller value (a preset's, meant for synthetic
    complexes, or one given) is raised to it, so that no probe, trial or profile crops a
    complex of the user's data below that percentile."""
    needed = data.stats(spec).atoms_needed
    if needed is None or needed <= base.data.max_atoms:
        return base
    log.info(
        "%s: the data's complexes have up to %d atoms (percentile %g): max_atoms raised from "
        "%d to %d, so that none is cropped",
        stage.value,
        needed,
        spec.data_limits.max_atoms_percentile,
        base.data.max_atoms,
        needed,
    )
    return TrainConfig.model_validate(merge_tree(base.to_dict(), {"data": {"max_atoms": needed}}))


def _say(choice: StageChoice) -> str:
    if not choice.feasible:
        return choice.reason
    speed = (
        f"{choice.on_data.throughput:.1f} complexes/s, {choice.on_data.cycle_minutes:.2f} min "
        f"per cycle on the data"
        if choice.on_data is not None
        else f"{choice.throughput or 0:.1f} samples/s, {choice.cycle_minutes or 0:.2f} min/cycle"
    )
    return f"chose {short(choice.knobs)} at batch {choice.batch_size} ({choice.reason}; {speed})"
