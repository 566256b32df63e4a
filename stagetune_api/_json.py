"""JSON has no NaN or infinity: such a value (a diverged loss, say) travels as null."""

from __future__ import annotations

import math
from typing import Any


def finite_json(value: Any) -> Any:
    """``value`` as plain JSON data: mapping keys as strings, tuples as lists, and every float
    that is not finite as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value
