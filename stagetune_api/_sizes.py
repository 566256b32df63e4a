"""Memory sizes as people write them (``4GiB``, ``512MiB``, ``1.5GB``) and as they read them."""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


#: A size as ``parse_size`` reads it, in the form a request may give it (JSON Schema's pattern
#: of a memory budget): a number, spaces at most between it and its unit.
SIZE_PATTERN = r"^[0-9]*\.?[0-9]+ *(?:[BbKkMmGgTt]|[KkMmGgTt][Ii]?[Bb])?$"


def parse_size(text: str | int) -> int:
    """Bytes in ``4GiB``, ``512MiB``, ``1.5GB``, ``2000000``; a ``ValueError`` names the text."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"The value of the memory size is {text!r}, but must be a number with an optional "
            "unit: B, KB, MB, GB, TB, KiB, MiB, GiB or TiB (e.g. 4GiB)."
        )
    value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value >= 2**63:
        raise ValueError(f"The value of the memory size is {text!r}, but must be below 8 EiB.")
    size = int(value)
    if size <= 0:
        raise ValueError(f"The value of the memory size is {text!r}, but must be positive.")
    return size


def format_size(n: float) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{int(n)} B"


def limit_words(limit_bytes: int, fraction: float) -> str:
    """A memory limit with where it comes from: ``230.40 MiB (90 % of 256.00 MiB)``, the
    fraction of the device's memory (or the CPU budget) a run may use."""
    if fraction >= 1:
        return format_size(limit_bytes)
    whole = format_size(round(limit_bytes / fraction))
    return f"{format_size(limit_bytes)} ({100 * fraction:.0f} % of {whole})"
