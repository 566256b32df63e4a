"""Jobs in a SQLite file: what the service knows survives a crash of the service.

One row per job: its id, state, the options it was asked with (JSON), the Ray submission id once
submitted, the ``Idempotency-Key`` it was created with, timestamps and the error of a failed job.
Each call opens its own connection (SQLite serialises writers), so the store is safe to share
between request handlers and the scheduler.
"""

from __future__ import annotations

import json
import sqlite3
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
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
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


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:  # one transaction: committed, or rolled back on an exception
                yield db
        finally:
            db.close()

    def create(
        self, job_id: str, options: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """The new queued job, or the one created before with the same key; and whether new."""
        with self._connect() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return _record(row), False
            try:
                db.execute(
                    "INSERT INTO jobs (id, state, options, idempotency_key, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (job_id, JobState.QUEUED.value, json.dumps(options), idempotency_key,
                     time.time()),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                if idempotency_key is None:
                    raise
                # the same key, created by a concurrent request since the lookup above
                row = db.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                return _record(row), False
        record = self.get(job_id)
        assert record is not None
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

    def in_state(self, *states: JobState) -> list[JobRecord]:
        """Jobs in any of ``states``, oldest first (the queue's order)."""
        marks = ",".join("?" * len(states))
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created, id",
                [s.value for s in states],
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
    )
