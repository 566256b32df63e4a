"""A job's driver: the ``stagetune`` process a Ray job runs as its entry point. It records itself
in its job's folder (``driver.json``: process, process group, host, start time); when the
service's own head dies and a new one is started, the driver of each job the old head lost is
ended there, since nothing else would end it: it waits for a cluster that is gone, and may
ignore SIGTERM meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path

import psutil

from stagetune_api import JobFiles, write_atomic

log = logging.getLogger(__name__)

#: Seconds a lost driver is given to end on SIGTERM before its process group is killed.
GRACE_SECONDS = 10.0


def record_driver(folder: Path) -> None:
    """Record this process as the driver of the job in ``folder``, if the folder is a job the
    service made (it holds the job's record): nowhere else would anything read it."""
    if not JobFiles(folder).record.is_file():
        return
    me = psutil.Process()
    record = {
        "pid": me.pid,
        "pgid": os.getpgid(0),
        "host": socket.gethostname(),
        "started": me.create_time(),
    }
    write_atomic(JobFiles(folder).driver, json.dumps(record) + "\n")


def end_driver(folder: Path, grace: float = GRACE_SECONDS) -> threading.Thread | None:
    """End the driver recorded in ``folder`` if it still runs on this machine: SIGTERM to its
    process group, SIGKILL after ``grace`` seconds if it is still there. Done in a thread of its
    own (returned), so the caller does not wait; None when there is nothing to end (no record,
    another machine's driver, a driver that ended, or a process that reuses its pid)."""
    try:
        record = json.loads(JobFiles(folder).driver.read_text())
        pid, pgid = int(record["pid"]), int(record["pgid"])
        if record["host"] != socket.gethostname():
            return None
        process = psutil.Process(pid)
        if abs(process.create_time() - float(record["started"])) > 1.0:
            return None  # another process, given the pid since
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None
    if pgid <= 1 or pgid == os.getpgid(0):  # never the service's own group
        pgid = 0
    log.warning("job %s: its driver (pid %d) outlived its Ray head: ending it", folder.name, pid)
    thread = threading.Thread(
        target=_end, args=(process, pgid, grace), name=f"end-driver-{pid}", daemon=True
    )
    thread.start()
    return thread


def _end(process: psutil.Process, pgid: int, grace: float) -> None:
    _signal(process, pgid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except psutil.TimeoutExpired:
        log.warning("driver pid %d ignored SIGTERM for %.0f s: killing it", process.pid, grace)
        _signal(process, pgid, signal.SIGKILL)
    except psutil.Error:
        pass


def _signal(process: psutil.Process, pgid: int, sig: signal.Signals) -> None:
    try:
        if pgid:
            os.killpg(pgid, sig)
        else:
            process.send_signal(sig)
    except (OSError, psutil.Error):  # it ended meanwhile
        pass
