"""What every value that enters from outside must be, whatever its field: text that UTF-8 can
write (no lone surrogate such as ``"\\ud800"``, which JSON allows), without control characters
(NUL among them) but tab and newline, and numbers that are finite and fit in 64 bits.

A value that breaks this would pass a field's own type (a string is a string) and fail later,
where it is written: in SQLite, a JSON file, a log line or a path. Refused at the edge, it is
refused with the key that holds it, and a stored record can never hold one.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: The largest magnitude of an integer (SQLite's and JSON readers' 64 bits).
INT_LIMIT = 2**63 - 1
_BAD_CHARS = re.compile(r"[\ud800-\udfff\x00-\x08\x0b-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\n\r\x85\u2028\u2029]")


def text_problem(text: str) -> str | None:
    """Why ``text`` is refused, or None."""
    bad = _BAD_CHARS.search(text)
    if bad is None:
        return None
    char = bad.group()
    if "\ud800" <= char <= "\udfff":
        return f"has a lone surrogate ({char!r} at {bad.start()}); text must be valid Unicode"
    return f"has a control character ({char!r} at {bad.start()}); only tab and newline are allowed"


def value_problems(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every ``(key, why)`` of ``value``'s parts (mappings, lists, their keys too) that is text
    UTF-8 cannot hold or a number that is not finite or beyond 64 bits."""
    if isinstance(value, str):
        why = text_problem(value)
        return [] if why is None else [(key or "(value)", why)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [(key or "(value)", f"{value} is not a finite number")]
    if isinstance(value, int) and abs(value) > INT_LIMIT:
        bits = value.bit_length()
        shown = str(value) if bits < 128 else f"an integer of about {int(bits * 0.30103)} digits"
        return [(key or "(value)", f"{shown} is beyond the 64-bit range (+-{INT_LIMIT})")]
    if isinstance(value, dict):
        found: list[tuple[str, str]] = []
        for name, item in value.items():
            part = f"{key}.{name}" if key else str(name)
            why = text_problem(name) if isinstance(name, str) else None
            if why is None and isinstance(name, str) and _LINE_BREAKS.search(name):
                why = "has a line break; a key is one line"
            if why is not None:
                found.append((part.encode("unicode_escape").decode(), f"the key {why}"))
            found += value_problems(item, part)
        return found
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in value_problems(item, f"{key}[{i}]")]
    return []


def check_values(value: Any) -> Any:
    """``value`` unchanged, or a ``ValueError`` whose lines are ``key: why``: for a pydantic
    ``model_validator(mode="before")``."""
    problems = value_problems(value)
    if problems:
        raise ValueError("\n".join(f"{key}: {why}" for key, why in problems))
    return value


def printable(text: str) -> str:
    """``text`` with every lone surrogate as U+FFFD: what a stored record that predates these
    checks is shown as, so that reading it never fails."""
    return _SURROGATE.sub("\ufffd", text)


def printable_json(value: Any) -> Any:
    """``printable`` on every string of JSON data."""
    if isinstance(value, str):
        return printable(value) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        return {printable_json(k): printable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable_json(v) for v in value]
    return value
