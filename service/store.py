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
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from service.records import (
    RECORD,
    JobRecord,
    JobState,
    job_folders,
    read_record,
    write_record,
)
from stagetune_api import printable_json

log = logging.getLogger(__name__)

__all__ = ["IndexFault", "JobRecord", "JobState", "JobStore", "SqliteFile"]

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


class IndexFault(Exception):
    """The SQLite index cannot be used now: damaged, missing, or its folder cannot be written.
    A request that needs it is answered 503 with the reason; the service repairs the index by
    itself (``SqliteFile.check``, at every poll of the follower), nothing restarted."""


class SqliteFile:
    """One SQLite file and the stores that keep their tables in it: its connections (one per
    thread, every one opened again after a fault), what is wrong with it now (``fault``), and its
    repair.

    A file SQLite cannot read (garbage, a damaged page) is set aside as
    ``<name>.corrupt-<time>``, with a warning in the log, and a new one is made, which each store
    refills from the files that are the record of truth (``service.records``): at start, and
    whenever it is found damaged, missing or replaced while the service runs. A fault of storage
    (a read-only or full folder) lasts until a write to the folder and to the file succeeds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Why the file cannot be used, and since when; None while it can.
        self.fault: tuple[str, float] | None = None
        self._local = threading.local()
        self._generation = 0  # a connection of an older generation is closed, not used
        self._refills: list[Callable[[], int]] = []
        self._repairing = threading.Lock()
        self._inode = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def refilled_by(self, refill: Callable[[], int]) -> None:
        """Run ``refill`` (a store's ``rebuild``) whenever the file is made again."""
        self._refills.append(refill)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in one transaction (committed, or rolled back on an
        exception). A fault of the file raises ``IndexFault``, and is kept in ``fault``."""
        try:
            db = self._connection()
            with db:
                yield db
        except sqlite3.DatabaseError as exc:
            if not _faulty(exc):
                raise  # a constraint, or a lock held past the wait: the caller's to answer
            self.failed(f"{self.path.name}: {exc}")
            why = f"the job index cannot be used ({exc}); it is being repaired, nothing was changed"
            raise IndexFault(why) from exc

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._local.generation != self._generation:
            db.close()
            db = None
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crash of the process
            self._local.db, self._local.generation = db, self._generation
        return db

    def failed(self, reason: str) -> None:
        """The file, or the folder it is in, failed: every connection is opened again before it
        is used, and ``check`` repairs it."""
        self._generation += 1
        if self.fault is None:
            log.warning("the job index is unusable: %s", reason)
        self.fault = (reason, time.time() if self.fault is None else self.fault[1])

    def check(self) -> bool:
        """Whether the file can be used; a file that is missing, replaced or at fault is
        repaired first (opened again, made again from the record of truth when damaged or
        lost, and a write tried)."""
        try:
            if os.stat(self.path).st_ino != self._inode:
                self.failed(f"{self.path} was replaced")
        except OSError as exc:
            self.failed(f"{self.path} is missing ({exc.strerror})")
        if self.fault is None:
            return True
        with self._repairing:
            return self._repair()

    def _repair(self) -> bool:
        since = self.fault
        if since is None:
            return True
        self._generation += 1
        try:
            if self._open():
                for refill in self._refills:
                    refill()
            self._try_writes()
        except (sqlite3.DatabaseError, OSError) as exc:
            self.fault = (f"{self.path.name} cannot be repaired yet: {exc}", since[1])
            return False
        self.fault = None
        down = time.time() - since[1]
        log.warning("the job index is usable again (it was not for %.0f s: %s)", down, since[0])
        return True

    def _try_writes(self) -> None:
        """Raise unless the folder and the file can be written now."""
        probe = self.path.with_name(f".{self.path.name}.write-check")
        probe.write_bytes(bytes(4096))  # a full disk refuses a block, not an empty file
        probe.unlink()
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock: refused on a read-only file

    def _open(self) -> bool:
        """Open the file, its tables made where they are missing; a file SQLite cannot read is
        set aside and a new one made. Whether any table was made (the stores refill them)."""
        try:
            return self._tables()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _damaged(exc):
                raise  # a locked or read-only file is not a corrupt one
            self._set_aside(exc)
            return self._tables()

    def _tables(self) -> bool:
        with self._connection() as db:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.execute("PRAGMA journal_mode=WAL")
            had = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            db.executescript(_SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "kind" not in columns:  # a file from before training runs
                db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'optimize'")
        self._inode = os.stat(self.path).st_ino
        return not {"jobs", "profiles"} <= had

    def _set_aside(self, exc: Exception) -> None:
        self._generation += 1
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
        log.warning("%s cannot be read (%s): set aside as %s; rebuilding it from the files",
                    self.path, exc, aside)  # fmt: skip


def _damaged(exc: sqlite3.OperationalError) -> bool:
    return "malformed" in str(exc) or "not a database" in str(exc)


def _faulty(exc: sqlite3.DatabaseError) -> bool:
    """Whether an error of SQLite's is a fault of the file or its folder (damaged, missing,
    read-only, full, unreadable), not of the statement or of a lock another writer holds."""
    if type(exc) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return False  # IntegrityError, ProgrammingError...: the statement's
    text = str(exc)
    return not ("locked" in text or "busy" in text)


class _Database:
    """A store whose tables are in a ``SqliteFile``: its own, or one it shares with another
    store (each store refills its tables when the file is made again)."""

    def __init__(self, path: Path, file: SqliteFile | None = None) -> None:
        self.file = file if file is not None else SqliteFile(path)
        self.path = self.file.path
        self.file.refilled_by(self.rebuild)

    def rebuild(self) -> int:
        return 0

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.file.connect()


class JobStore(_Database):
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
            if folder.is_dir() and not (folder / RECORD).is_file():
                write_record(folder, _record(row))
        found = [r for f in job_folders(self.jobs_dir) if f.name not in known
                 and (r := read_record(f)) is not None]  # fmt: skip
        with self._connect() as db:
            for record in found:
                db.execute(
                    "INSERT INTO jobs (id, state, options, submission_id, idempotency_key, "
                    "created, started, finished, error, kind) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (record.id, record.state.value, json.dumps(record.options),
                     record.submission_id, record.idempotency_key, record.created,
                     record.started, record.finished, record.error, record.kind),
                )  # fmt: skip
        for record in found:
            if not (self.jobs_dir / record.id / RECORD).is_file():
                write_record(self.jobs_dir / record.id, record)
        if found:
            log.warning("%d jobs were missing from %s: indexed again from their folders",
                        len(found), self.path)  # fmt: skip
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
