"""Errors of the model package.

StagetuneError          anything this project raises on purpose
├── ConfigError         a configuration file, key or value that is not accepted (ValueError)
└── DataError           a data root or complex that cannot be used
    └── ComplexError    one complex, with its path and the reason
"""

from __future__ import annotations

from collections.abc import Sequence


class StagetuneError(Exception):
    """Base of every error raised on purpose; the message is meant for the user."""


class ConfigError(StagetuneError, ValueError):
    """A configuration that is not accepted; the message names the file or key and the choices.

    ``problems`` holds the same as (key, message) pairs where the error is about keys of a
    composed configuration, so that a form can show each next to its field."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class DataError(StagetuneError):
    """Data that cannot be used."""


class ComplexError(DataError):
    """One complex that cannot be used."""

    def __init__(self, complex_id: str, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.complex_id = complex_id
        self.path = path
        self.reason = reason
