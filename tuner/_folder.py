"""A job's folder: every file a job reads or writes, by name, and every write atomic.

    <storage>/<job id>/
        job.json                  the spec (stagetune_api.JobSpec), once it passed every check
        result.json               the answer (stagetune_api.JobResult)
        profiles/<stage>.yaml     what `stagetune train --profile` accepts
        trials.csv                every variable of every trial, typed (stagetune_api.TrialRecord)
        trials-wide.csv           the same, one row per trial and one column per variable
        audit.md                  for people, with the hash of each configuration
        job.log                   every INFO line of the job
        progress.json             the searches so far (stagetune_api.Progress)
        searches/<stage>-<search>.json   a finished search's outcome: a resumed job skips it
        ray/<stage>-<search>/     the Ray Tune experiment (and its searcher's state): an
                                  interrupted search is restored from there

A write goes to a temporary file first and replaces the old one whole, so a job killed while
writing leaves the old file or the new one, never half of one. Readers see the same.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from stagetune_api import (
    JobResult,
    JobSpec,
    Search,
    Stage,
    TrialRecord,
    finite_json,
    write_atomic,
)
from tuner._results import audit_markdown, trials_csv, trials_wide_csv

#: What ``--output`` copies out of the job folder.
SHARED = ("result.json", "trials.csv", "trials-wide.csv", "audit.md", "job.log", "profiles")


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def profile_yaml(config: dict[str, Any], meta: dict[str, Any], filename: str) -> str:
    """A profile as ``stagetune train --profile`` reads it: ``meta``, then the configuration."""
    text = yaml.safe_dump({"meta": meta, **config}, sort_keys=False)
    return f"# stagetune train --profile {filename}\n{text}"


class JobFolder:
    """The folder of one job. Paths are properties; writes are methods."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, spec: JobSpec) -> JobFolder:
        return cls(spec.job_dir)

    # --- paths ------------------------------------------------------------------------------

    @property
    def job_json(self) -> Path:
        return self.path / "job.json"

    @property
    def result_json(self) -> Path:
        return self.path / "result.json"

    @property
    def trials_csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def trials_wide_csv(self) -> Path:
        return self.path / "trials-wide.csv"

    @property
    def audit_md(self) -> Path:
        return self.path / "audit.md"

    @property
    def job_log(self) -> Path:
        return self.path / "job.log"

    @property
    def progress_json(self) -> Path:
        return self.path / "progress.json"

    @property
    def experiments(self) -> Path:
        """Where Ray Tune keeps the experiments of the job's searches."""
        return self.path / "ray"

    def profile(self, stage: Stage) -> Path:
        """``profiles/<stage>.yaml``, relative to the folder (as result.json names it)."""
        return Path("profiles") / f"{stage.value}.yaml"

    def search(self, stage: Stage, search: Search) -> Path:
        return self.path / "searches" / f"{stage.value}-{search.value}.json"

    # --- writes -----------------------------------------------------------------------------

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_spec(self, spec: JobSpec) -> None:
        write_json(self.job_json, spec.model_dump(mode="json"))

    def write_result(self, result: JobResult) -> None:
        write_json(self.result_json, result.model_dump(mode="json"))

    def write_trials(self, records: list[TrialRecord]) -> None:
        """``trials.csv`` (typed, one row per variable) and ``trials-wide.csv`` (one per trial)."""
        write_atomic(self.trials_csv, trials_csv(records))
        write_atomic(self.trials_wide_csv, trials_wide_csv(records))

    def write_audit(self, result: JobResult, records: list[TrialRecord]) -> None:
        write_atomic(self.audit_md, audit_markdown(result, records))

    def write_profile(self, stage: Stage, config: dict[str, Any], meta: dict[str, Any]) -> str:
        """Write the stage's profile; its path relative to the folder."""
        relative = self.profile(stage)
        write_atomic(self.path / relative, profile_yaml(config, meta, relative.name))
        return str(relative)

    def save_search(self, stage: Stage, search: Search, outcome: dict[str, Any]) -> None:
        write_json(self.search(stage, search), finite_json(outcome))

    def saved_search(self, stage: Stage, search: Search) -> dict[str, Any] | None:
        path = self.search(stage, search)
        return dict(json.loads(path.read_text())) if path.is_file() else None

    def copy_to(self, output: Path) -> None:
        """Copy what people use (``SHARED``) to ``output``."""
        output.mkdir(parents=True, exist_ok=True)
        for name in SHARED:
            source = self.path / name
            if source.is_dir():
                shutil.copytree(source, output / name, dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, output / name)
