"""Saved profiles in the service's SQLite file: one row per version of each named training
configuration (its configuration as JSON, and its hash), each version also a file of its own
(``service.records``) from which a lost index is rebuilt."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.records import profile_versions, write_profile_version
from service.sqlite_file import SqliteFile, SqliteStore
from stagetune_api import printable_json

log = logging.getLogger(__name__)


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


class ProfileStore(SqliteStore):
    """Named training configurations, versioned: saving a name again adds a version, unless the
    configuration is the same as its latest. With ``profiles_dir``, each version is written to a
    file of its own too (in the same transaction), and ``rebuild`` indexes every file the SQLite
    file lacks."""

    def __init__(
        self, path: Path, profiles_dir: Path | None = None, file: SqliteFile | None = None
    ) -> None:
        self.profiles_dir = profiles_dir
        super().__init__(path, file)

    def rebuild(self) -> int:
        """Index every saved version whose row is missing, and write the file of every row that
        has none (saved before versions had files); how many rows were indexed."""
        if self.profiles_dir is None:
            return 0
        with self._connect() as db:
            rows = {
                (r["name"], r["version"]): dict(r) for r in db.execute("SELECT * FROM profiles")
            }
        files = {(r["name"], int(r["version"])): r for r in profile_versions(self.profiles_dir)}
        with self._connect() as db:
            for key in files.keys() - rows.keys():
                row = files[key]
                db.execute(
                    "INSERT INTO profiles (name, version, created, stage, job_id, description, "
                    "config, config_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["name"],
                        row["version"],
                        row.get("created", time.time()),
                        row.get("stage"),
                        row.get("job_id"),
                        row.get("description"),
                        json.dumps(row["config"]),
                        row["config_hash"],
                    ),
                )
        for key in rows.keys() - files.keys():
            write_profile_version(self.profiles_dir, _file_row(rows[key]))
        missing = len(files.keys() - rows.keys())
        if missing:
            log.warning(
                "%d profile versions were missing from %s: indexed again from %s",
                missing,
                self.path,
                self.profiles_dir,
            )
        return missing

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
                (
                    name,
                    version,
                    time.time(),
                    stage,
                    job_id,
                    description,
                    json.dumps(config),
                    config_hash,
                ),
            )
            if self.profiles_dir is not None:
                row = db.execute(
                    "SELECT * FROM profiles WHERE name = ? AND version = ?", (name, version)
                ).fetchone()
                write_profile_version(self.profiles_dir, _file_row(dict(row)))
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
            return int(
                db.execute("SELECT COUNT(*) FROM profiles WHERE name = ?", (name,)).fetchone()[0]
            )

    def latest(self) -> list[tuple[ProfileRecord, int]]:
        """The latest version of every profile, by name, with how many versions it has."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT p.*, n.versions FROM profiles p JOIN (SELECT name, MAX(version) AS top, "
                "COUNT(*) AS versions FROM profiles GROUP BY name) n "
                "ON p.name = n.name AND p.version = n.top ORDER BY p.name"
            ).fetchall()
        return [(_profile(r), int(r["versions"])) for r in rows]


def _file_row(row: dict[str, Any]) -> dict[str, Any]:
    """A profile row as its file keeps it: the configuration as JSON data, not text."""
    return {**row, "config": json.loads(row["config"])}


def _profile(row: sqlite3.Row) -> ProfileRecord:
    return ProfileRecord(
        name=row["name"],
        version=int(row["version"]),
        created=row["created"],
        stage=row["stage"],
        job_id=row["job_id"],
        description=printable_json(row["description"]),
        config=printable_json(json.loads(row["config"])),
        config_hash=row["config_hash"],
    )
