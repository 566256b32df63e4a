"""YAML in ``configs/``: parsed by libyaml where PyYAML has it, once per version of a file, with
the reads of a block recorded so that a caller can tell when its inputs changed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from stat import S_ISREG
from typing import Any

import yaml

from model._errors import ConfigError


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's when PyYAML has it) that also reads ``1e-3`` as a float (YAML 1.1
    wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


FileVersion = tuple[str, int, int]
"""A file's absolute path, modification time (ns) and size."""

_parsed: dict[FileVersion, dict[str, Any]] = {}
_reads: ContextVar[list[FileVersion] | None] = ContextVar("config_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[list[FileVersion]]:
    """The versions of the YAML files ``read_yaml_mapping`` reads inside the block."""
    reads: list[FileVersion] = []
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def unchanged(versions: Iterable[FileVersion]) -> bool:
    """Whether every file is still at its recorded version."""
    for path, mtime, size in versions:
        try:
            stat = os.stat(path)
        except OSError:
            return False
        if (stat.st_mtime_ns, stat.st_size) != (mtime, size):
            return False
    return True


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; a copy the caller may change. Parsed once per version of the
    file, known by its modification time and size (a job composes a dozen files, and the
    service composes a job per request); an edit that keeps both is not seen."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise ConfigError(f"{path}: file not found")
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    reads = _reads.get()
    if reads is not None:
        reads.append(key)
    data = _parsed.get(key)
    if data is None:
        data = parse_yaml(path.read_text(), str(path))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: must hold a mapping of keys to values, not {type(data).__name__}"
            )
        if len(_parsed) >= 256:
            _parsed.clear()
        _parsed[key] = data
    return copy_tree(data)  # type: ignore[no-any-return]


def copy_tree(value: Any) -> Any:
    """A copy of a tree of parsed YAML: new dicts and lists, the same (immutable) scalars."""
    if value is None or isinstance(value, str | int | float):  # most of a tree; no ABC check
        return value
    if isinstance(value, list | tuple):
        return [copy_tree(v) for v in value]
    if isinstance(value, Mapping):
        return {k: copy_tree(v) for k, v in value.items()}
    return value
