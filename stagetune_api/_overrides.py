"""What an override's value (``key=value``, the value YAML) may be, checked before anything
parses it whole: no anchors or aliases (``&a``, ``*a``: a few hundred bytes of them expand to
billions of items, a "billion laughs"), nested at most ``MAX_DEPTH`` deep, and numbers that are
finite and within +-(2**53 - 1) (``.nan``, ``.inf``, ``1e309`` and 20-digit integers are
refused, as every number entering from outside is: ``stagetune_api._text``).

The value is read as the training configuration reads it (``model``'s loader: YAML 1.1, safe,
``1e-3`` a float); a value that is not valid YAML is left to the composition, which says why.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from stagetune_api._text import BEYOND, value_problems

#: The deepest nesting of lists and mappings an override's value may have.
MAX_DEPTH = 16
_KEY = re.compile(r"^\s*[~+]*([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)\s*=")
#: What a value needs for a problem these checks find: an anchor or alias, a digit, a
#: non-finite float, or nesting. Others (most values: names, paths) are not parsed here.
_SUSPECT = re.compile(r"[&*\d\[{\n]|\.(?:nan|inf)", re.IGNORECASE)
_OPEN = (
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
)
_CLOSE = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The loader of ``configs/`` and overrides (``model/_yaml.py``): safe, libyaml's when
    PyYAML has it, and ``1e-3`` a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def override_problems(overrides: Any) -> list[tuple[str, str]]:
    """``(overrides[i], why)`` for each override in ``overrides`` whose value is refused."""
    if not isinstance(overrides, list | tuple):
        return []
    found = []
    for i, text in enumerate(overrides):
        if isinstance(text, str):
            why = override_problem(text)
            if why is not None:
                found.append((f"overrides[{i}]", why))
    return found


def override_value(text: str) -> Any:
    """The value of override ``text`` (``key=value``) as the training configuration reads it:
    ``null``, ``NULL`` and ``~`` are None, ``true`` and ``False`` booleans, ``None`` and
    ``'null'`` text. A value with anchors, aliases or deep nesting (refused by
    ``override_problem``), or that is not YAML, is its text as written."""
    _, _, raw = text.partition("=")
    if not raw.strip():
        return None
    if override_problem(text) is not None:
        return raw
    try:
        return yaml.load(raw, Loader=_Loader)
    except (yaml.YAMLError, ValueError):
        return raw


def override_problem(text: str) -> str | None:
    """Why the value of override ``text`` is refused, or None. Its tokens are read first (a
    linear scan that expands nothing); it is parsed only when they hold no anchor, alias or
    deep nesting."""
    key, sep, raw = text.partition("=")
    if not sep or not _SUSPECT.search(raw):
        return None
    match = _KEY.match(text)
    name = match.group(1) if match else key.strip()
    depth = 0
    try:
        for token in yaml.scan(raw, Loader=_Loader):
            if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
                mark = "&" if isinstance(token, yaml.AnchorToken) else "*"
                return (
                    f"{name}: YAML anchors and aliases ({mark}{token.value}) are not accepted in "
                    "an override; write the value out"
                )
            depth += isinstance(token, _OPEN) - isinstance(token, _CLOSE)
            if depth > MAX_DEPTH:
                return f"{name}: nested more than {MAX_DEPTH} deep"
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
    except yaml.YAMLError:
        return None  # not YAML: the composition says why
    except ValueError:  # an integer of more digits than Python converts (4,300)
        return f"{name}: an integer of over 4,300 digits is {BEYOND}"
    problems = value_problems(value, name)
    if not problems:
        return None
    return "; ".join(f"{where}: {why}" for where, why in problems[:5])
