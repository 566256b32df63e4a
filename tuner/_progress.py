"""Progress a person can follow: one log line per finished trial (the job's output, which the Ray
dashboard shows for a submitted job), a live status line on a terminal, and ``progress.json`` in
the job folder for programs (``stagetune_api.Progress``: the service and the page read it).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from stagetune_api import Best, SearchFigures
from tuner._folder import write_json

log = logging.getLogger(__name__)


class ProgressBoard:
    """The job's progress, stage by stage and search by search, kept in ``progress.json``.

    Every change reads the file afresh and replaces it whole: a search restored from its
    experiment brings back the callback it was started with, and that callback must not write
    an old copy of the board over the new one.
    """

    def __init__(self, path: Path, started: float) -> None:
        self.path = path
        self.started = started

    def _read(self) -> dict[str, Any]:
        if self.path.is_file():
            return dict(json.loads(self.path.read_text()))
        return {"stages": {}}

    def _change(self, stage: str, search: str, change: Callable[[SearchFigures], Any]) -> Any:
        state = self._read()
        searches = state["stages"].setdefault(stage, {})
        figures = SearchFigures.model_validate(searches.get(search, {}))
        answer = change(figures)
        searches[search] = figures.model_dump(mode="json")
        state["elapsed_seconds"] = round(time.time() - self.started, 1)
        write_json(self.path, state)
        return answer

    def update(self, stage: str, search: str, figures: dict[str, Any]) -> None:
        """Set these of the search's ``SearchFigures``."""

        def update(entry: SearchFigures) -> None:
            for key, value in figures.items():
                setattr(entry, key, value)

        self._change(stage, search, update)

    def add_retry(self, stage: str, search: str, trial_id: str) -> int:
        def add(entry: SearchFigures) -> int:
            entry.retries[trial_id] = entry.retries.get(trial_id, 0) + 1
            return entry.retries[trial_id]

        return int(self._change(stage, search, add))

    def retries(self, stage: str, search: str) -> dict[str, int]:
        """Restarts after a failure, per trial, over every run of the job."""
        entry = self._read()["stages"].get(stage, {}).get(search, {})
        return dict(SearchFigures.model_validate(entry).retries)


class SearchProgress(Callback):
    """Counts one search's trials; ``describe`` turns a finished trial's last result into the
    words of its log line, ``best`` picks the best of those results (or None)."""

    def __init__(
        self,
        stage: str,
        search: str,
        board: ProgressBoard,
        describe: Callable[[dict[str, Any]], str],
        best: Callable[[list[dict[str, Any]]], Best | None],
        pruned: Callable[[], int] = lambda: 0,
        max_t: int | None = None,
        total: int | None = None,
    ) -> None:
        self.stage, self.search, self.board = stage, search, board
        self.describe, self.best, self.pruned = describe, best, pruned
        self.max_t, self.total = max_t, total
        self.live = sys.stderr.isatty()
        self._drawn = 0.0

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        n = self.board.add_retry(self.stage, self.search, trial.trial_id)
        log.warning(
            "%s %s: trial %s failed and is retried (retry %d)",
            self.stage,
            self.search,
            trial.trial_id,
            n,
        )

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        # Tune calls this before the trial's status becomes TERMINATED
        result = trial.last_result or {}
        done = 1 + sum(t.status == Trial.TERMINATED and t is not trial for t in trials)
        log.info(
            "%s %s: trial %s finished (%d/%s)%s: %s",
            self.stage,
            self.search,
            trial.trial_id,
            done,
            self.total or "?",
            ", stopped early" if self._short(trial) else "",
            self.describe(result),
        )
        self._update(trials, force=True, finishing=trial)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        log.warning(
            "%s %s: trial %s failed: %s",
            self.stage,
            self.search,
            trial.trial_id,
            trial.error_file or "no error file",
        )
        self._update(trials, force=True)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._update(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._update(trials, force=True)
        if self.live:
            sys.stderr.write("\n")

    def _short(self, trial: Trial) -> bool:
        """Whether a finished trial ran less than the whole budget: ASHA stopped it."""
        done = (trial.last_result or {}).get("training_iteration", 0)
        return self.max_t is not None and done < self.max_t

    def _update(
        self, trials: list[Trial], force: bool = False, finishing: Trial | None = None
    ) -> None:
        now = time.time()
        if not force and now - self._drawn < 1.0:
            return
        self._drawn = now
        finished = [t for t in trials if t.status == Trial.TERMINATED or t is finishing]
        figures = {
            "done": len(finished),
            "running": sum(t.status == Trial.RUNNING and t is not finishing for t in trials),
            "pending": sum(t.status == Trial.PENDING for t in trials),
            "errored": sum(t.status == Trial.ERROR for t in trials),
            "pruned": self.pruned(),
            "stopped_early": sum(self._short(t) for t in finished),
        }
        best = self.best([t.last_result for t in finished if t.last_result])
        self.board.update(self.stage, self.search, {**figures, "best": best})
        if self.live:
            elapsed = int(now - self.board.started)
            line = (
                f"{self.stage} {self.search} | done {figures['done']} running "
                f"{figures['running']} pruned {figures['pruned']} stopped early "
                f"{figures['stopped_early']} | best {_words(best)} | "
                f"{elapsed // 60:02d}:{elapsed % 60:02d}"
            )
            sys.stderr.write("\r\x1b[K" + line[:160])
            sys.stderr.flush()


def _words(best: Best | None) -> str:
    if best is None:
        return "-"
    value = f"{best.value:,.0f}" if best.value.is_integer() else f"{best.value:,.4g}"
    return f"{best.metric} {value} {best.unit}"


def short(values: dict[str, Any]) -> str:
    """A configuration in a few words: ``key=value`` pairs, numbers to 3 significant digits."""
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())
    )
