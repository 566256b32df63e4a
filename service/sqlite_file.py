"""The SQLite file that indexes jobs and saved profiles (``service.store``,
``service.profile_store``): one connection per thread, every one opened again after a fault,
and the file's repair while the service runs, refilled from the record of truth
(``service.records``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

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
        log.warning(
            "%s cannot be read (%s): set aside as %s; rebuilding it from the files",
            self.path,
            exc,
            aside,
        )


def _damaged(exc: sqlite3.OperationalError) -> bool:
    return "malformed" in str(exc) or "not a database" in str(exc)


def _faulty(exc: sqlite3.DatabaseError) -> bool:
    """Whether an error of SQLite's is a fault of the file or its folder (damaged, missing,
    read-only, full, unreadable), not of the statement or of a lock another writer holds."""
    if type(exc) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return False  # IntegrityError, ProgrammingError...: the statement's
    text = str(exc)
    return not ("locked" in text or "busy" in text)


class SqliteStore:
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
