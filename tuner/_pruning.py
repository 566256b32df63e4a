"""Dominance pruning: a configuration at least as large in every size knob as one that did not fit
does not fit either, so it is answered without spending device time.

Only "at least as large in every knob" prunes: one larger knob alone says nothing (a wider but
shallower model can need less memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dominates(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether ``a`` is at least as large as ``b`` in every knob they share (and they share one)."""
    shared = a.keys() & b.keys()
    return bool(shared) and all(a[k] >= b[k] for k in shared)


class DominancePruner:
    """Remembers configurations that did not fit; answers whether a new one is dominated."""

    def __init__(self) -> None:
        self.failed: list[dict[str, Any]] = []

    def record_failure(self, knobs: Mapping[str, Any]) -> None:
        # keep only the minimal failures: a failure dominating a recorded one adds nothing
        if not any(dominates(knobs, f) for f in self.failed):
            self.failed = [f for f in self.failed if not dominates(f, knobs)] + [dict(knobs)]

    def pruned_by(self, knobs: Mapping[str, Any]) -> dict[str, Any] | None:
        """A recorded failure that ``knobs`` dominates, or None when it must be probed."""
        return next((f for f in self.failed if dominates(knobs, f)), None)
