"""The fit search's searcher: HyperOpt (TPE) over a discrete architecture space, with dominance
pruning and without repeats.

TPE proposes points of the space; before a proposal becomes a trial, this searcher answers it
itself when it can, and asks TPE again:

- a configuration that dominates one that did not fit is answered "does not fit" (score 0)
  without a probe, and recorded as pruned;
- a configuration already probed is answered with its known score (TPE over a small discrete
  space proposes repeats often).

- with ``bound`` given (an upper bound of a configuration's score that costs no probe, such as
  production's parameter count), a configuration whose bound is below the best score found so
  far is answered with its bound, without a probe (branch and bound), and recorded as pruned.

Every answer reaches TPE as a completed evaluation, so its model learns from it. When TPE keeps
proposing answered points, the first unanswered point of the grid is taken, and when every point
is answered the search is finished. The searcher is a plain state machine: it is tested without
a cluster, and Ray Tune checkpoints it with the experiment, so a resumed job keeps its pruning
and the list of what it pruned (``pruned_in`` reads it back).
"""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray.tune.search import Searcher

from tuner._pruning import DominancePruner

_TRIES = 32  # proposals of TPE before the grid's next point is taken instead


@dataclass(frozen=True)
class Pruned:
    """A configuration answered without a probe: it dominates ``failed``, or its score can be at
    most ``bound``, below the ``best`` already found."""

    knobs: dict[str, Any]
    failed: dict[str, Any] | None = None
    bound: float | None = None
    best: float | None = None


class ProbeSearcher(Searcher):
    """Wraps a searcher over the knobs of ``grid``; ``fits(result)`` tells a failure from a fit.

    ``grid`` is every configuration of the space; ``metric`` is maximised.
    """

    def __init__(
        self,
        inner: Searcher,
        grid: Sequence[Mapping[str, Any]],
        metric: str,
        fits: Callable[[dict[str, Any]], bool],
        bound: Callable[[dict[str, Any]], float | None] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode="max")
        self.inner = inner
        self.grid = [dict(g) for g in grid]
        self.fits = fits
        self.bound = bound
        self.bounds: dict[tuple[Any, ...], float | None] = {}
        self.pruner = DominancePruner()
        self.pruned: list[Pruned] = []
        self.scores: dict[tuple[Any, ...], float] = {}  # probed configurations
        # trial id: (the inner searcher's id for it, or None for a grid point; its key)
        self.running: dict[str, tuple[str | None, tuple[Any, ...]]] = {}

    def _key(self, knobs: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(knobs[k] for k in sorted(self.grid[0]))

    def _settled(self, key: tuple[Any, ...]) -> bool:
        return key in self.scores or any(k == key for _, k in self.running.values())

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for attempt in range(_TRIES):
            inner_id = f"{trial_id}~{attempt}"
            config = self.inner.suggest(inner_id)
            if config is None or config == Searcher.FINISHED:
                break
            knobs = {k: config[k] for k in self.grid[0]}
            key = self._key(knobs)
            if key in self.scores:
                self.inner.on_trial_complete(inner_id, {self.metric: self.scores[key]})
                continue
            pruned = self._prune(knobs)
            if pruned is not None:
                answer = 0.0 if pruned.failed is not None else pruned.bound
                self.inner.on_trial_complete(inner_id, {self.metric: answer})
                continue
            if self._settled(key):  # running now: no score to give TPE yet
                self.inner.on_trial_complete(inner_id, error=True)
                continue
            self.running[trial_id] = (inner_id, key)
            return knobs
        for knobs in self.grid:
            key = self._key(knobs)
            if not self._settled(key) and self._prune(knobs) is None:
                self.running[trial_id] = (None, key)
                return dict(knobs)
        return Searcher.FINISHED  # type: ignore[return-value]  # Tune's own sentinel

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        inner_id, key = self.running.pop(trial_id, (None, None))
        if key is None:
            return
        knobs = dict(zip(sorted(self.grid[0]), key, strict=True))
        if error or result is None:
            self.scores[key] = 0.0  # a configuration that crashed is not proposed again
        else:
            self.scores[key] = float(result.get(self.metric, 0.0))
            if not self.fits(result):
                self.pruner.record_failure(knobs)
        if inner_id is not None:
            self.inner.on_trial_complete(inner_id, result, error)

    def _prune(self, knobs: dict[str, Any]) -> Pruned | None:
        """Why ``knobs`` needs no probe (recorded the first time), or None."""
        known = next((p for p in self.pruned if p.knobs == knobs), None)
        if known is not None:
            return known
        failed = self.pruner.pruned_by(knobs)
        pruned = None
        if failed is not None:
            pruned = Pruned(knobs, failed=failed)
        elif self.bound is not None and self.scores:
            key = self._key(knobs)
            if key not in self.bounds:
                self.bounds[key] = self.bound(knobs)
            best = max(self.scores.values())
            bound = self.bounds[key]
            if bound is not None and bound < best:
                pruned = Pruned(knobs, bound=bound, best=best)
        if pruned is not None:
            self.pruned.append(pruned)
        return pruned

    @classmethod
    def pruned_in(cls, experiment: str) -> list[Pruned]:
        """The configurations pruned so far, from the searcher state Tune saved in the
        ``experiment`` folder (it saves it as the experiment goes, and when it ends)."""
        saved = sorted(glob.glob(os.path.join(experiment, Searcher.CKPT_FILE_TMPL.format("*"))))
        if not saved:
            return []
        with open(saved[-1], "rb") as f:
            state = pickle.load(f)["state"]
        return list(state.get("pruned", []))

    def save(self, checkpoint_path: str) -> None:
        """One file (Tune renames just the one it asked for): our state and the inner's."""
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "inner.pkl")
            self.inner.save(inner)
            with open(inner, "rb") as f:
                inner_state = f.read()
        state = {k: v for k, v in self.__dict__.items() if k not in ("inner", "fits", "bound")}
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": state, "inner": inner_state}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "inner.pkl")
            with open(inner, "wb") as f:
                f.write(saved["inner"])
            self.inner.restore(inner)
        self.__dict__.update(saved["state"])
