"""What every value that enters from outside must be, whatever its field: text that UTF-8 can
write (no lone surrogate such as ``"\\ud800"``, which JSON allows), without control characters
(NUL among them) but tab and newline, keys of one line that are not empty, and numbers that are
finite and within +-(2**53 - 1), the integers every JSON reader holds exactly (I-JSON, RFC 7493;
the results page reads them as JavaScript numbers, SQLite as 64-bit integers).

A value that breaks this would pass a field's own type (a string is a string) and fail later,
where it is written: in SQLite, a JSON file, a log line or a path. Refused at the edge, it is
refused with the key that holds it, and a stored record can never hold one.

``check_values`` refuses such a value with the key that holds it. ``Text``, ``Key``,
``Integer``, ``Number`` and ``JsonValue`` are the same rules as types, for the fields of a
request: what their JSON Schema states (a pattern, a bound) is what the request's model
accepts, so that the OpenAPI document says exactly what is refused. (A lone surrogate is the
one case the schema leaves unsaid: no pattern names it alike in every regular expression
dialect. The bound is one a double holds exactly, as the OpenAPI document writes every bound
as a double.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Union

from pydantic import Field
from typing_extensions import TypeAliasType

#: The largest magnitude of a number (I-JSON's: every integer up to it is exact in a double).
INT_LIMIT = 2**53 - 1
#: Why a number beyond it is refused.
BEYOND = f"beyond +-{INT_LIMIT}, the integers every JSON reader holds exactly"
#: Text without control characters but tab and newline, as a pattern that JSON Schema (ECMA-262),
#: Python and pydantic read alike.
TEXT_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
#: A key: such text, one line (no line break of any kind), not empty.
KEY_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+$"

Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Key = TypeAliasType(
    "Key",
    Annotated[
        str,
        Field(
            pattern=KEY_PATTERN,
            description="a key: one line of text, not empty, without control characters "
            "(tab aside)",
        ),
    ],
)
Integer = Annotated[int, Field(ge=-INT_LIMIT, le=INT_LIMIT)]
Number = Annotated[float, Field(ge=-INT_LIMIT, le=INT_LIMIT)]
JsonValue = TypeAliasType(
    "JsonValue",
    Union["dict[Key, JsonValue]", "list[JsonValue]", Text, Integer, Number, bool, None],
)
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


def key_problem(name: str) -> str | None:
    """Why ``name`` is refused as a key, or None: as text, or for being empty or more than one
    line."""
    if name == "":
        return "is empty; a key names what it holds"
    why = text_problem(name)
    if why is None and _LINE_BREAKS.search(name):
        why = "has a line break; a key is one line"
    return why


def value_problems(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every ``(key, why)`` of ``value``'s parts (mappings, lists, their keys too) that is text
    UTF-8 cannot hold, a key that is empty or more than one line, or a number that is not
    finite or beyond ``INT_LIMIT``."""
    if isinstance(value, str):
        why = text_problem(value)
        return [] if why is None else [(key or "(value)", why)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [(key or "(value)", f"{value} is not a finite number")]
    if isinstance(value, int | float) and abs(value) > INT_LIMIT:
        bits = value.bit_length() if isinstance(value, int) else 0
        shown = str(value) if bits < 128 else f"an integer of about {int(bits * 0.30103)} digits"
        return [(key or "(value)", f"{shown} is {BEYOND}")]
    if isinstance(value, dict):
        found: list[tuple[str, str]] = []
        for name, item in value.items():
            part = f"{key}.{name}" if key else str(name)
            why = key_problem(name) if isinstance(name, str) else None
            if why is not None:
                shown = part.encode("unicode_escape").decode() or '""'
                found.append((shown, f"the key {why}"))
            found += value_problems(item, part)
        return found
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in value_problems(item, f"{key}[{i}]")]
    return []


class KeyedProblems(ValueError):
    """What a check of several values found, each problem with the key that holds it. A pydantic
    validator raises it and pydantic keeps it in the error (``ctx["error"]``): whoever answers
    reads each key as it was found, never parsed back from the message (a line ``key: why``
    each)."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = [(str(key), str(why)) for key, why in problems]
        super().__init__("\n".join(f"{key}: {why}" for key, why in self.problems))


def check_values(value: Any) -> Any:
    """``value`` unchanged, or ``KeyedProblems``: for a pydantic
    ``model_validator(mode="before")``."""
    problems = value_problems(value)
    if problems:
        raise KeyedProblems(problems)
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
