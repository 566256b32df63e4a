"""Jobs and saved profiles in a SQLite file (``service.profile_store`` for profiles), the index of
the files that are the record of truth (``service.records``).

One row per job: its id, state, the options it was asked with (JSON), the Ray submission id once
submitted, the ``Idempotency-Key`` it was created with, timestamps and the error of a failed job;
and one row per version of each saved profile (its configuration as JSON, and its hash).
Each thread keeps its own connection (SQLite serialises writers), so the store is safe to share
between request handlers and the scheduler. The file is in WAL mode: readers never wait for a
writer, and a commit survives a crash of the service (even SIGKILL) without an fsync per commit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from service.records import (
    JobRecord,
    JobState,
    job_folders,
    read_record,
    write_record,
)
from service.sqlite_file import IndexFault, SqliteFile, SqliteStore
from stagetune_api import JobFiles, printable_json

log = logging.getLogger(__name__)

__all__ = ["IndexFault", "JobRecord", "JobState", "JobStore", "SqliteFile"]

_UPDATABLE = {"state", "submission_id", "started", "finished", "error"}


class JobStore(SqliteStore):
    """The jobs' index. With ``jobs_dir``, every change is written to the job's folder too (its
    ``job-record.json``, in the same transaction: the row is not kept if the file cannot be
    written), and ``rebuild`` indexes every folder the file lacks."""

    def __init__(
        self, path: Path, jobs_dir: Path | None = None, file: SqliteFile | None = None
    ) -> None:
        self.jobs_dir = jobs_dir
        super().__init__(path, file)

    def rebuild(self) -> int:
        """Index every job folder the SQLite file has no row for, and write the record of every
        row whose folder has none (a job from before folders kept records); how many indexed."""
        if self.jobs_dir is None:
            return 0
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs").fetchall()
        known = {row["id"] for row in rows}
        for row in rows:
            folder = self.jobs_dir / row["id"]
            if folder.is_dir() and not JobFiles(folder).record.is_file():
                write_record(folder, _record(row))
        found = [
            r
            for f in job_folders(self.jobs_dir)
            if f.name not in known and (r := read_record(f)) is not None
        ]
        with self._connect() as db:
            for record in found:
                db.execute(
                    "INSERT INTO jobs (id, state, options, submission_id, idempotency_key, "
                    "created, started, finished, error, kind) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        record.id,
                        record.state.value,
                        json.dumps(record.options),
                        record.submission_id,
                        record.idempotency_key,
                        record.created,
                        record.started,
                        record.finished,
                        record.error,
                        record.kind,
                    ),
                )
        for record in found:
            if not JobFiles(self.jobs_dir / record.id).record.is_file():
                write_record(self.jobs_dir / record.id, record)
        if found:
            log.warning(
                "%d jobs were missing from %s: indexed again from their folders",
                len(found),
                self.path,
            )
        return len(found)

    def _mirror(self, db: sqlite3.Connection, job_id: str) -> None:
        """Write the job's row to its folder, inside the transaction that changed it."""
        if self.jobs_dir is None:
            return
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is not None and (self.jobs_dir / job_id).is_dir():
            write_record(self.jobs_dir / job_id, _record(row))

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
                id=job_id,
                state=JobState.QUEUED,
                options=options,
                submission_id=None,
                idempotency_key=idempotency_key,
                created=time.time(),
                started=None,
                finished=None,
                error=None,
                kind=kind,
            )
            try:
                db.execute(
                    "INSERT INTO jobs (id, state, options, idempotency_key, created, kind) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        JobState.QUEUED.value,
                        json.dumps(options),
                        idempotency_key,
                        record.created,
                        kind,
                    ),
                )
                self._mirror(db, job_id)
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
            return int(
                db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state.value,)).fetchone()[
                    0
                ]
            )

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
            raise ValueError(
                f"The value of `fields` names {sorted(unknown)}, but must name "
                f"columns among {sorted(_UPDATABLE)}."
            )
        if "state" in fields:
            fields["state"] = JobState(fields["state"]).value
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE id = ?", [*fields.values(), job_id])
            self._mirror(db, job_id)


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        state=JobState(row["state"]),
        options=printable_json(json.loads(row["options"])),
        submission_id=row["submission_id"],
        idempotency_key=row["idempotency_key"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        error=printable_json(row["error"]),
        kind=row["kind"],
    )
