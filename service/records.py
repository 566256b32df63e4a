"""The record of truth: each job's folder keeps its own record (``job-record.json``), and each
saved profile version a file of its own (``profiles/<name>/<version>.json`` in the state folder).
SQLite (``service.store``) is their index, fast to query; when it is missing, empty or corrupt,
it is rebuilt from these files, so no job and no profile is forgotten.

A job folder from before records were kept is read from what it holds: ``spec.json`` (a search)
or ``profile.yaml`` (a training run), a ``result.json``/``report.json`` when it finished. Its
state is then what Ray says of its submission (``stagetune-<id>``), and, where Ray no longer
knows it, what its folder shows (see ``service.follower``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from stagetune_api import JobFiles, JobKind, printable_json, write_atomic

log = logging.getLogger(__name__)


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: JobState
    options: dict[str, Any]
    submission_id: str | None
    idempotency_key: str | None
    created: float
    started: float | None
    finished: float | None
    error: str | None
    kind: str = "optimize"  # or "train": a training run of a saved profile

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in printable_json(data).items() if k in fields}
        return cls(**{**known, "state": JobState(known["state"])})


def submission_of(job_id: str) -> str:
    """The Ray submission id of a job: one per job, so a job is never submitted twice."""
    return f"stagetune-{job_id}"


def write_record(folder: Path, record: JobRecord) -> None:
    write_atomic(JobFiles(folder).record, json.dumps(record.to_json(), indent=2) + "\n")


def read_record(folder: Path) -> JobRecord | None:
    """The record ``folder`` keeps, or one made from its files; None for a folder that holds
    no job (or files no version wrote: the log says which)."""
    path = JobFiles(folder).record
    if path.is_file():
        try:
            return JobRecord.from_json(_mapping(path, json.loads))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s cannot be read (%s); reading the job from its other files", path, exc)
    try:
        return _from_files(folder)
    except (ValueError, TypeError) as exc:
        log.warning("%s holds no job this service can read (%s): left out", folder, exc)
        return None


def _from_files(folder: Path) -> JobRecord | None:
    files = JobFiles(folder)
    if files.train_profile.is_file():
        kind, result = JobKind.TRAIN.value, files.train_report
        meta = _mapping(files.train_profile, yaml.safe_load).get("meta")
        meta = meta if isinstance(meta, dict) else {}
        options = {"profile": str(meta.get("profile", "?")), "version": meta.get("version", 1)}
    elif files.spec.is_file():
        kind, result = JobKind.OPTIMIZE.value, files.result_json
        spec = _mapping(files.spec, json.loads)
        options = {k: v for k, v in spec.items() if k not in ("job_id", "storage", "address")}
    else:
        return None
    created = _created(folder)
    done = result.is_file()
    started = done or any(p.exists() for p in (files.job_json, files.train_runs, files.experiments))
    return JobRecord(
        id=folder.name,
        # a job that started is followed on Ray (which may still run it, or has lost it); one
        # that never did was left half-made by a service that stopped while queueing it
        state=JobState.SUCCEEDED if done else JobState.RUNNING if started else JobState.FAILED,
        options=options,
        submission_id=submission_of(folder.name) if started else None,
        idempotency_key=None,
        created=created,
        started=created if started else None,
        finished=result.stat().st_mtime if done else None if started else created,
        error=None
        if started
        else "found with no record and never started when the job index "
        "was rebuilt: submit it again",
        kind=kind,
    )


def _mapping(path: Path, parse: Any) -> dict[str, Any]:
    """The mapping a JSON or YAML file holds; ``ValueError`` when it holds none."""
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no mapping")
    return data


def _created(folder: Path) -> float:
    """When the job was asked for: its id says so (``20261130-045236-1f2e3d``, local time, as
    ``new_job_id`` writes it), else the folder's time."""
    try:
        return time.mktime(time.strptime(folder.name[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return folder.stat().st_mtime


def job_folders(jobs_dir: Path) -> list[Path]:
    return sorted(p for p in jobs_dir.iterdir() if p.is_dir()) if jobs_dir.is_dir() else []


# --- profiles -----------------------------------------------------------------------------------


def profile_path(profiles_dir: Path, name: str, version: int) -> Path:
    return profiles_dir / name / f"{version}.json"


def write_profile_version(profiles_dir: Path, row: dict[str, Any]) -> None:
    path = profile_path(profiles_dir, str(row["name"]), int(row["version"]))
    write_atomic(path, json.dumps(row, indent=2) + "\n")


def profile_versions(profiles_dir: Path) -> list[dict[str, Any]]:
    """Every saved profile version's row, as its file keeps it."""
    rows = []
    for path in sorted(profiles_dir.glob("*/*.json")) if profiles_dir.is_dir() else []:
        try:
            row = _mapping(path, json.loads)
            version = int(row["version"])
            if not isinstance(row["config"], dict) or not isinstance(row["config_hash"], str):
                raise ValueError("config or config_hash of the wrong type")
            rows.append({**row, "name": str(row["name"]), "version": version})
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s is not a saved profile version (%s): left out", path, exc)
    return rows
