"""A trial's figures as named variables, read off the types that carry them.

A record (a dataclass or a pydantic model) names its figures by its fields: every field, under
a prefix, or, where the class says so in ``RECORDED``, the fields it maps to full names. A field
whose type is itself a record is walked under its own name (``probe.data.throughput``); a
sequence of records (the probe's measurements) is kept in the record and left out of the
variables. ``variables_of`` gives a record's variables, the rows of ``trials.csv``;
``columns_of`` gives the variables marked ``Shown``, the columns of a search's trial table.
Both walk the same fields, so a table cannot name a variable the records do not write.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["count", "bytes", "figure", "loss", "yes/no"]


@dataclass(frozen=True)
class Shown:
    """Marks a figure people see in a search's trial table: its heading with the unit, how a
    value is written, and its place among the table's columns."""

    heading: str
    kind: Kind
    rank: int


class TrialColumn(BaseModel):
    model_config = ConfigDict(frozen=True)

    variable: str = Field(description="the trial variable it shows, e.g. probe.capacity")
    heading: str = Field(description="its heading, with the unit")
    kind: Kind = Field(
        description="how a value is written: count (a whole number, grouped), bytes (KiB, MiB, "
        "GiB), figure (three significant digits), loss (four decimals), yes/no"
    )


@dataclass(frozen=True)
class _Field:
    name: str  # the attribute
    variable: str  # its variable's name, or the prefix of a nested record's
    record: type | None  # the record type it holds (one, or a sequence of them), if any
    many: bool  # a sequence of records
    shown: Shown | None


def variables_of(record: Any, prefix: str = "") -> dict[str, Any]:
    """A record's figures by variable name; a nested record that is None adds none."""
    out: dict[str, Any] = {}
    for f in _fields(type(record), prefix):
        value = getattr(record, f.name)
        if f.record is None:
            out[f.variable] = value
        elif value is not None and not f.many:
            out.update(variables_of(value, _nested(f.variable)))
    return out


def columns_of(cls: type, prefix: str = "") -> list[TrialColumn]:
    """The ``Shown`` figures of a record type, nested records' included, in their rank."""
    ranked = sorted(_shown(cls, prefix), key=lambda pair: pair[0])
    return [column for _, column in ranked]


def _shown(cls: type, prefix: str) -> Iterator[tuple[int, TrialColumn]]:
    for f in _fields(cls, prefix):
        if f.record is not None and not f.many:
            yield from _shown(f.record, _nested(f.variable))
        elif f.shown is not None:
            column = TrialColumn(variable=f.variable, heading=f.shown.heading, kind=f.shown.kind)
            yield f.shown.rank, column


def _nested(variable: str) -> str:
    return f"{variable}." if variable else ""


_FIELDS: dict[tuple[type, str], tuple[_Field, ...]] = {}


def _fields(cls: type, prefix: str) -> tuple[_Field, ...]:
    """A record type's fields, each with its variable's name under ``prefix`` (read once)."""
    if (cls, prefix) not in _FIELDS:
        _FIELDS[cls, prefix] = _read_fields(cls, prefix)
    return _FIELDS[cls, prefix]


def _read_fields(cls: type, prefix: str) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    recorded: Mapping[str, str] | None = getattr(cls, "RECORDED", None)
    if recorded is not None:
        names = {name: variable for name, variable in recorded.items()}
    elif dataclasses.is_dataclass(cls):
        names = {f.name: prefix + f.name for f in dataclasses.fields(cls)}
    elif issubclass(cls, BaseModel):
        names = {name: prefix + name for name in cls.model_fields}
    else:
        raise TypeError(f"{cls.__name__} is not a record (a dataclass or a pydantic model)")
    return tuple(_field(name, variable, hints[name]) for name, variable in names.items())


def _field(name: str, variable: str, hint: Any) -> _Field:
    shown = None
    if typing.get_origin(hint) is Annotated:
        shown = next((m for m in hint.__metadata__ if isinstance(m, Shown)), None)
        hint = hint.__origin__
    many = typing.get_origin(hint) in (tuple, list)
    inner = typing.get_args(hint)[0] if many else hint
    return _Field(name, variable, _record_in(inner), many, shown)


def _record_in(hint: Any) -> type | None:
    """The record type a hint holds (``X`` or ``X | None``), or None."""
    options = (
        typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    )
    for option in options:
        if isinstance(option, type) and (
            dataclasses.is_dataclass(option) or issubclass(option, BaseModel)
        ):
            return option
    return None
