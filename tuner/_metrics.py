"""stagetune's figures as Ray metrics, for the Ray dashboard's Metrics view and Grafana.

The driver records them, from the same records as ``progress.json`` and the log lines: trials by
state and the best so far (``ProgressBoard.update``), and each finished trial's own figures (a
fit trial's peak against its limit, its step and throughput; a tune trial's validation loss).
Every metric carries the job's id, stage and search as tags. Ray exports them on each node's
metrics port (``ray start --metrics-export-port``), named with Ray's ``ray_`` prefix:
``ray_stagetune_trials``, ``ray_stagetune_best`` ... (deploy/grafana/stagetune.json shows them).

Recording needs a connected Ray; without one (a test's board, a job read back from disk)
nothing is recorded.
"""

from __future__ import annotations

import logging
import math
from functools import cache
from typing import Any

import ray
from ray.util.metrics import Gauge

from stagetune_api import Best, EpochReport, FitReport, SearchFigures

log = logging.getLogger(__name__)

SEARCH_TAGS = ("job_id", "stage", "search")
TRIAL_TAGS = (*SEARCH_TAGS, "trial_id")
#: a search's trials by state, as progress.json counts them
STATES = ("done", "running", "pending", "errored", "pruned", "stopped_early")


#: each gauge: its key here, its name (Ray exports it as ``ray_<name>``), what it is, its tags
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "trials": ("stagetune_trials", "trials of a search, by state", (*SEARCH_TAGS, "state")),
    "total": ("stagetune_trials_total", "trials a search runs at most", SEARCH_TAGS),
    "best": (
        "stagetune_best",
        "the best figure of a search so far",
        (*SEARCH_TAGS, "metric", "unit"),
    ),
    "peak": ("stagetune_fit_peak_bytes", "a fit trial's predicted footprint", TRIAL_TAGS),
    "limit": (
        "stagetune_fit_limit_bytes",
        "the memory limit a fit trial's answer is under",
        TRIAL_TAGS,
    ),
    "batch": ("stagetune_fit_max_batch_size", "a fit trial's largest batch", TRIAL_TAGS),
    "step": (
        "stagetune_fit_step_seconds",
        "a fit trial's predicted step at its answer, the worst case",
        TRIAL_TAGS,
    ),
    "throughput": (
        "stagetune_fit_throughput",
        "a fit trial's complexes per second at its answer",
        TRIAL_TAGS,
    ),
    "step_on_data": (
        "stagetune_fit_step_seconds_on_data",
        "a fit trial's step predicted on the job's data at its atom budget, from steps timed there",
        TRIAL_TAGS,
    ),
    "val_loss": (
        "stagetune_tune_val_loss",
        "a tune trial's validation loss at its latest epoch",
        TRIAL_TAGS,
    ),
    "epoch": ("stagetune_tune_epoch", "the epochs a tune trial has trained", TRIAL_TAGS),
}


@cache
def _gauges() -> dict[str, Gauge]:
    """The gauges, made once per process (Ray keeps one registry per name)."""
    return {
        key: Gauge(name, description=description, tag_keys=tags)
        for key, (name, description, tags) in METRICS.items()
    }


class JobMetrics:
    """The metrics of one job: ``search`` sets a search's trial counts and best, ``trial`` a
    trial's own figures from its last result."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    @staticmethod
    def recording() -> bool:
        return ray.is_initialized()

    def search(self, stage: str, search: str, figures: SearchFigures) -> None:
        if not self.recording():
            return
        gauges, tags = _gauges(), self._tags(stage, search)
        for state in STATES:
            gauges["trials"].set(getattr(figures, state), {**tags, "state": state})
        if figures.total is not None:
            gauges["total"].set(figures.total, tags)
        best = figures.best
        if isinstance(best, Best) and math.isfinite(best.value):
            gauges["best"].set(best.value, {**tags, "metric": best.metric, "unit": best.unit})

    def trial(self, stage: str, search: str, trial_id: str, result: dict[str, Any]) -> None:
        """A trial's figures from a result it reported: a fit trial's probe, or a training
        trial's epoch."""
        if not self.recording():
            return
        tags = {**self._tags(stage, search), "trial_id": trial_id}
        fit = FitReport.of_metrics(result)
        if fit is not None and fit.probe is not None:
            self._fit(fit, tags)
            return
        epoch = EpochReport.of_metrics(result)
        if epoch is not None:
            gauges = _gauges()
            if math.isfinite(epoch.val_loss):
                gauges["val_loss"].set(epoch.val_loss, tags)
            gauges["epoch"].set(epoch.epoch, tags)

    def _fit(self, fit: FitReport, tags: dict[str, str]) -> None:
        probe, gauges = fit.probe, _gauges()
        assert probe is not None
        figures = {
            "peak": probe.atom_peak_bytes or probe.peak_bytes,
            "limit": probe.limit_bytes,
            "batch": probe.max_batch_size,
            "step": probe.step_seconds,
            "throughput": probe.throughput,
            "step_on_data": probe.data.step_seconds if probe.data else None,
        }
        for name, value in figures.items():
            if isinstance(value, int | float) and math.isfinite(value):
                gauges[name].set(value, tags)

    def _tags(self, stage: str, search: str) -> dict[str, str]:
        return {"job_id": self.job_id, "stage": stage, "search": search}
