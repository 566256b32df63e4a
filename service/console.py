"""Where a command's words go: its log lines (to the terminal, set up by ``service.cli``, and to
a file with ``log_to_file``) and its JSON answers (stdout, ``print_json``)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

LOG_FORMAT = logging.Formatter(
    "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"
)
#: The handlers a command added: ``service.cli`` replaces them when it runs again in a process.
handlers: list[logging.Handler] = []


def log_to_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(LOG_FORMAT)
    handlers.append(handler)
    logging.getLogger().addHandler(handler)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
