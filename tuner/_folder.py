"""A job's folder as the tuner writes it: ``stagetune_api.JobFiles`` (the layout, every file by
name) with the writes. A write goes to a temporary file first and replaces the old one whole, so
a job killed while writing leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from stagetune_api import (
    JobFiles,
    JobResult,
    JobSpec,
    Search,
    Stage,
    TrialRecord,
    finite_json,
    write_atomic,
)
from tuner._results import audit_markdown, trials_csv, trials_wide_csv


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def profile_yaml(config: dict[str, Any], meta: dict[str, Any], filename: str) -> str:
    """A profile as ``stagetune train --profile`` reads it: ``meta``, then the configuration."""
    text = yaml.safe_dump({"meta": meta, **config}, sort_keys=False)
    return f"# stagetune train --profile {filename}\n{text}"


class JobFolder(JobFiles):
    """The folder of one job: its paths (``JobFiles``) and its writes."""

    @classmethod
    def of(cls, spec: JobSpec) -> JobFolder:
        return cls(spec.job_dir)

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
        """Copy what people use (``JobFiles.SHARED``) to ``output``."""
        output.mkdir(parents=True, exist_ok=True)
        for name in self.SHARED:
            source = self.path / name
            if source.is_dir():
                shutil.copytree(source, output / name, dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, output / name)
