"""Writing a record's file whole: a temporary file beside it, then a rename, so a process killed
while writing leaves the old file or the new one, never half of one (and readers see the same).
No fsync: like the SQLite index (WAL, synchronous=NORMAL), a record survives a crash of the
process, not of the machine's power. Text is UTF-8 whatever the locale."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole; on failure (a full disk) nothing is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
