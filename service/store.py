"""Jobs and saved profiles in a SQLite file: what the service knows survives a crash of the service.

One row per job: its id, state, the options it was asked with (JSON), the Ray submission id once
submitted, the ``Idempotency-Key`` it was created with, timestamps and the error of a failed job;
and one row per version of each saved profile (its configuration as JSON, and its hash).
Each thread keeps its own connection (SQLite serialises writers), so the store is safe to share
between request handlers and the scheduler. The file is in WAL mode: readers never wait for a
writer, and a commit survives a crash of the service (even SIGKILL) without an fsync per commit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    submission_id TEXT,
    idempotency_key TEXT UNIQUE,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    kind TEXT NOT NULL DEFAULT 'optimize'
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS profiles (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    stage TEXT,
    job_id TEXT,
    description TEXT,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
"""


_UPDATABLE = {"state", "submission_id", "started", "finished", "error"}


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


class _Database:
    """The SQLite file: created with every table on first use, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "kind" not in columns:  # a file from before training runs
                db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'optimize'")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crash of the process
            self._local.db = db
        with db:  # one transaction: committed, or rolled back on an exception
            yield db


class JobStore(_Database):
    def create(
        self,
        job_id: str,
        options: dict[str, Any],
        idempotency_key: str | None = None,
        kind: str = "optimize",
    ) -> tuple[JobRecord, bool]:
        """The new queued job, or the one created before with the same key; and whether new."""
        with self._connect() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return _record(row), False
            record = JobRecord(
                id=job_id, state=JobState.QUEUED, options=options, submission_id=None,
                idempotency_key=idempotency_key, created=time.time(), started=None,
                finished=None, error=None, kind=kind,
            )  # fmt: skip
            try:
                db.execute(
                    "INSERT INTO jobs (id, state, options, idempotency_key, created, kind) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, JobState.QUEUED.value, json.dumps(options), idempotency_key,
                     record.created, kind),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                if idempotency_key is None:
                    raise
                # the same key, created by a concurrent request since the lookup above
                row = db.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                return _record(row), False
        return record, True

    def by_idempotency_key(self, idempotency_key: str) -> JobRecord | None:
        """The job created with ``idempotency_key``, if any."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return None if row is None else _record(row)

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def page(
        self, state: JobState | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[JobRecord], int]:
        """A page of jobs, newest first, and how many there are in all."""
        where, args = ("WHERE state = ?", [state.value]) if state else ("", [])
        with self._connect() as db:
            total = db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created DESC, id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_record(r) for r in rows], int(total)

    def count(self, state: JobState) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state.value,))
                       .fetchone()[0])  # fmt: skip

    def in_state(self, *states: JobState, limit: int = -1) -> list[JobRecord]:
        """Jobs in any of ``states``, oldest first (the queue's order); the first ``limit``
        (all when negative)."""
        marks = ",".join("?" * len(states))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created, id LIMIT ?",
                [*(s.value for s in states), limit],
            ).fetchall()
        return [_record(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job (``state`` takes a ``JobState``)."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"The value of `fields` names {sorted(unknown)}, but must name "
                             f"columns among {sorted(_UPDATABLE)}.")  # fmt: skip
        if "state" in fields:
            fields["state"] = JobState(fields["state"]).value
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", [*fields.values(), job_id])


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        state=JobState(row["state"]),
        options=json.loads(row["options"]),
        submission_id=row["submission_id"],
        idempotency_key=row["idempotency_key"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        error=row["error"],
        kind=row["kind"],
    )


@dataclass(frozen=True)
class ProfileRecord:
    name: str
    version: int
    created: float
    stage: str | None
    job_id: str | None
    description: str | None
    config: dict[str, Any]
    config_hash: str


class ProfileStore(_Database):
    """Named training configurations, versioned: saving a name again adds a version, unless the
    configuration is the same as its latest."""

    def save(
        self,
        name: str,
        config: dict[str, Any],
        config_hash: str,
        stage: str | None = None,
        job_id: str | None = None,
        description: str | None = None,
    ) -> tuple[ProfileRecord, bool]:
        """The saved version, and whether it is new."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # two saves of one name: one after the other
            latest = db.execute(
                "SELECT * FROM profiles WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
            if latest is not None and latest["config_hash"] == config_hash:
                return _profile(latest), False
            version = 1 if latest is None else int(latest["version"]) + 1
            db.execute(
                "INSERT INTO profiles (name, version, created, stage, job_id, description, "
                "config, config_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, version, time.time(), stage, job_id, description, json.dumps(config),
                 config_hash),
            )  # fmt: skip
        record = self.get(name, version)
        assert record is not None
        return record, True

    def get(self, name: str, version: int | None = None) -> ProfileRecord | None:
        """A version of the profile; the latest when ``version`` is None."""
        with self._connect() as db:
            if version is None:
                row = db.execute(
                    "SELECT * FROM profiles WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT * FROM profiles WHERE name = ? AND version = ?", (name, version)
                ).fetchone()
        return None if row is None else _profile(row)

    def versions(self, name: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM profiles WHERE name = ?", (name,))
                       .fetchone()[0])  # fmt: skip

    def latest(self) -> list[tuple[ProfileRecord, int]]:
        """The latest version of every profile, by name, with how many versions it has."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT p.*, n.versions FROM profiles p JOIN (SELECT name, MAX(version) AS top, "
                "COUNT(*) AS versions FROM profiles GROUP BY name) n "
                "ON p.name = n.name AND p.version = n.top ORDER BY p.name"
            ).fetchall()
        return [(_profile(r), int(r["versions"])) for r in rows]


def _profile(row: sqlite3.Row) -> ProfileRecord:
    return ProfileRecord(
        name=row["name"],
        version=int(row["version"]),
        created=row["created"],
        stage=row["stage"],
        job_id=row["job_id"],
        description=row["description"],
        config=json.loads(row["config"]),
        config_hash=row["config_hash"],
    )
