"""A job's folder, every file by name, and how to read the records among them: the one place the
layout is written down. The tuner writes its files through ``tuner.JobFolder`` (these names and
its writes), the service adds its own and reads them all through ``JobFiles``.

    <storage>/<job id>/
        job-record.json           the service's record of the job (its state, options, times)
        driver.json               the process that runs the job (pid, process group, host)
        spec.json                 a search's request, as ``stagetune optimize --spec`` reads it
        profile.yaml              a training job's profile; report.json its report, runs/ its run
        job.json                  the spec (JobSpec), once it passed every check
        result.json               the answer (JobResult)
        profiles/<stage>.yaml     what ``stagetune train --profile`` accepts
        trials.csv                every variable of every trial, typed (TrialRecord)
        trials-wide.csv           the same, one row per trial and one column per variable
        audit.md                  for people, with the hash of each configuration
        job.log                   every INFO line of the job
        progress.json             the searches so far (Progress)
        searches/<stage>-<search>.json   a finished search's outcome: a resumed job skips it
        ray/<stage>-<search>/     the Ray Tune experiment (and its searcher's state)

A training run's output folder is ``RunFiles``, a sweep's (``<output>/sweeps/<id>/``)
``SweepFiles``.
"""

from __future__ import annotations

from pathlib import Path

from stagetune_api._enums import JobKind, Search, Stage
from stagetune_api._progress import Progress
from stagetune_api._result import JobResult


class JobFiles:
    """The files of one job's folder, by name (class attributes) and by path (properties)."""

    RECORD = "job-record.json"
    DRIVER = "driver.json"
    SPEC = "spec.json"
    TRAIN_PROFILE = "profile.yaml"
    TRAIN_REPORT = "report.json"
    TRAIN_RUNS = "runs"
    JOB = "job.json"
    RESULT = "result.json"
    PROFILES = "profiles"
    TRIALS = "trials.csv"
    TRIALS_WIDE = "trials-wide.csv"
    AUDIT = "audit.md"
    LOG = "job.log"
    PROGRESS = "progress.json"
    SEARCHES = "searches"
    EXPERIMENTS = "ray"
    #: what ``stagetune optimize --output`` copies out of the folder
    SHARED = (RESULT, TRIALS, TRIALS_WIDE, AUDIT, LOG, PROFILES)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # --- the service's ----------------------------------------------------------------------

    @property
    def record(self) -> Path:
        return self.path / self.RECORD

    @property
    def driver(self) -> Path:
        return self.path / self.DRIVER

    @property
    def spec(self) -> Path:
        return self.path / self.SPEC

    @property
    def train_profile(self) -> Path:
        return self.path / self.TRAIN_PROFILE

    @property
    def train_report(self) -> Path:
        return self.path / self.TRAIN_REPORT

    @property
    def train_runs(self) -> Path:
        return self.path / self.TRAIN_RUNS

    def answer(self, kind: JobKind | str) -> Path:
        """What a finished job leaves: result.json of a search, report.json of a training run."""
        return self.train_report if JobKind(kind) is JobKind.TRAIN else self.result_json

    # --- the tuner's ------------------------------------------------------------------------

    @property
    def job_json(self) -> Path:
        return self.path / self.JOB

    @property
    def result_json(self) -> Path:
        return self.path / self.RESULT

    @property
    def trials_csv(self) -> Path:
        return self.path / self.TRIALS

    @property
    def trials_wide_csv(self) -> Path:
        return self.path / self.TRIALS_WIDE

    @property
    def audit_md(self) -> Path:
        return self.path / self.AUDIT

    @property
    def job_log(self) -> Path:
        return self.path / self.LOG

    @property
    def progress_json(self) -> Path:
        return self.path / self.PROGRESS

    @property
    def experiments(self) -> Path:
        """Where Ray Tune keeps the experiments of the job's searches."""
        return self.path / self.EXPERIMENTS

    def profile(self, stage: Stage) -> Path:
        """``profiles/<stage>.yaml``, relative to the folder (as result.json names it)."""
        return Path(self.PROFILES) / f"{Stage(stage).value}.yaml"

    def search(self, stage: Stage, search: Search) -> Path:
        return self.path / self.SEARCHES / f"{stage.value}-{search.value}.json"

    def workers(self, stage: Stage) -> Path:
        """The stage's distributed probe (``Workers``), kept beside its searches."""
        return self.path / self.SEARCHES / f"{stage.value}-workers.json"

    # --- reading ----------------------------------------------------------------------------

    def read_result(self) -> JobResult | None:
        """result.json, or None before the job finished."""
        path = self.result_json
        return JobResult.model_validate_json(path.read_bytes()) if path.is_file() else None

    def read_progress(self) -> Progress | None:
        """progress.json, or None before the first search started."""
        path = self.progress_json
        return Progress.model_validate_json(path.read_bytes()) if path.is_file() else None


class RunFiles:
    """A training run's output folder (``train.output_dir``): an audit entry per run, and a
    folder per run named by the first 12 characters of its configuration's hash."""

    AUDIT = "audit.md"
    LOG = "train.log"
    CONFIG = "config.json"
    METRICS = "metrics.json"
    WEIGHTS = "model.pt"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def audit_md(self) -> Path:
        return self.path / self.AUDIT

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    def run_dir(self, digest: str) -> Path:
        return self.path / digest[:12]


class SweepFiles:
    """A sweep's folder, ``<output>/sweeps/<id>/``: its table, progress, log and experiment."""

    TABLE = "sweep.csv"
    PROGRESS = JobFiles.PROGRESS
    LOG = "sweep.log"
    EXPERIMENT = "ray"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def table(self) -> Path:
        return self.path / self.TABLE

    @property
    def progress_json(self) -> Path:
        return self.path / self.PROGRESS

    @property
    def log(self) -> Path:
        return self.path / self.LOG
