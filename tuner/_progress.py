"""Progress a person can follow, from one record per search (``SearchFigures``): in the job's
output (the driver log the Ray dashboard shows for a submitted job), a line when a trial starts
or finishes and a status line at each trial event and at least every ``STATUS_EVERY`` seconds
(trials by state, the running ones, the best so far, the time spent and left); a live status
line on a terminal; ``progress.json`` in the job folder for programs (``stagetune_api.Progress``:
the service and the page read it); and Ray metrics (``tuner._metrics``).
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
from tuner._metrics import JobMetrics

log = logging.getLogger(__name__)

STATUS_EVERY = 30.0  # seconds between status lines in the job's output while nothing happens


class ProgressBoard:
    """The job's progress, stage by stage and search by search, kept in ``progress.json``.

    Every change reads the file afresh and replaces it whole: a search restored from its
    experiment brings back the callback it was started with, and that callback must not write
    an old copy of the board over the new one.
    """

    def __init__(self, path: Path, started: float, metrics: JobMetrics | None = None) -> None:
        self.path = path
        self.started = started
        self.metrics = metrics

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
        if self.metrics is not None:
            self.metrics.search(stage, search, figures)
        return answer

    def figures(self, stage: str, search: str) -> SearchFigures:
        entry = self._read()["stages"].get(stage, {}).get(search, {})
        return SearchFigures.model_validate(entry)

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
        return dict(self.figures(stage, search).retries)


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
        self._said = 0.0  # when the last status line went to the job's output
        self._began: float | None = None  # when this run of the search saw its first step

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        log.info(
            "%s %s: trial %s started: %s",
            self.stage,
            self.search,
            trial.trial_id,
            short(_tried(trial.config)),
        )
        self._update(trials, force=True, starting=trial, event=True)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        if self.board.metrics is not None:
            self.board.metrics.trial(self.stage, self.search, trial.trial_id, result)

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
        self._update(trials, force=True, finishing=trial, event=True)

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
        self._update(trials, force=True, event=True)

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
        self,
        trials: list[Trial],
        force: bool = False,
        finishing: Trial | None = None,
        event: bool = False,
        starting: Trial | None = None,
    ) -> None:
        """Count the trials by state (Tune calls back before it changes the state of the trial
        ``finishing`` or ``starting``) into the board; say the status in the job's output at
        an ``event`` or ``STATUS_EVERY`` seconds after the last time."""
        now = time.time()
        if self._began is None:
            self._began = now
        if not force and now - self._drawn < 1.0:
            return
        self._drawn = now
        finished = [t for t in trials if t.status == Trial.TERMINATED or t is finishing]
        running = [
            t for t in trials if (t.status == Trial.RUNNING or t is starting) and t is not finishing
        ]
        figures = {
            "done": len(finished),
            "running": len(running),
            "pending": sum(t.status == Trial.PENDING and t is not starting for t in trials),
            "errored": sum(t.status == Trial.ERROR for t in trials),
            "pruned": self.pruned(),
            "stopped_early": sum(self._short(t) for t in finished),
        }
        best = self.best([t.last_result for t in finished if t.last_result])
        self.board.update(self.stage, self.search, {**figures, "best": best})
        if event or now - self._said >= STATUS_EVERY:
            self._said = now
            status = self.board.figures(self.stage, self.search)
            log.info("%s", self._status_line(status, running, now))
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

    def _status_line(self, figures: SearchFigures, running: list[Trial], now: float) -> str:
        """The search in one line for the job's output: its trials by state, the running ones
        (id and what each tries), the best so far, the time spent and left."""
        began = self._began or now
        left = _time_left(figures, now - began)
        trying = "; ".join(f"{t.trial_id} {short(_tried(t.config))}" for t in running[:4])
        more = f"; {len(running) - 4} more" if len(running) > 4 else ""
        return (
            f"{self.stage} {self.search} status: {figures.done}/{figures.total or '?'} done, "
            f"{figures.running} running{f' ({trying}{more})' if running else ''}, "
            f"{figures.pending} pending, {figures.pruned} pruned, {figures.stopped_early} "
            f"stopped early, {figures.errored} failed | best {_words(_best(figures))} | "
            f"{_clock(now - self.board.started)} elapsed, {left}"
        )


def _tried(config: dict[str, Any]) -> dict[str, Any]:
    """What a trial tries, without the bookkeeping Tune adds to its configuration."""
    return {k: v for k, v in config.items() if not k.startswith("__")}


def _best(figures: SearchFigures) -> Best | None:
    return figures.best if isinstance(figures.best, Best) else None


def _time_left(figures: SearchFigures, spent: float) -> str:
    """What is left of the search at the rate its trials have finished so far."""
    if figures.total is None or figures.done == 0:
        return "time left unknown until a trial finishes"
    left = max(0, figures.total - figures.done - figures.errored)
    if left == 0:
        return "no trial left"
    return f"about {_clock(spent / figures.done * left)} left ({left} trial(s) at most)"


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


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
