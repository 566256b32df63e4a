"""The tune search of a stage: HyperOpt over training hyperparameters (``tuner._tune_space``) for
the chosen model and batch, ASHA stopping trials early on validation loss. The experiment lives
under ``<job>/ray/<stage>-tune``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ray import tune
from ray.tune.search.hyperopt import HyperOptSearch

from stagetune_api import (
    VALIDATION_FIGURES,
    EpochReport,
    Search,
    TrainedReport,
    TrialRecord,
    TrialStatus,
    Verdict,
)
from tuner._experiment import (
    Execution,
    asha,
    finite,
    flat,
    prefixed,
    run_experiment,
    trained_status,
    training_progress,
    training_settings,
    trial_record,
)
from tuner._progress import ProgressBoard, short
from tuner._trials import TuneContext, tune_trial
from tuner._tune_space import apply_hyperparameters, tune_space


@dataclass
class TuneOutcome:
    best: dict[str, Any] | None  # the best trial's hyperparameters
    metrics: dict[str, Any] | None  # and its last validation figures
    trials: int
    stopped_early: int
    records: list[TrialRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["records"] = [r.model_dump(mode="json") for r in self.records]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuneOutcome:
        records = [TrialRecord.model_validate(r) for r in data["records"]]
        return cls(**{**data, "records": records})


def run_tune(
    ctx: TuneContext,
    trials: int,
    execution: Execution,
    board: ProgressBoard,
    grace_period: int,
    reduction_factor: float,
) -> TuneOutcome:
    space = tune_space(sorted(ctx.configs), ctx.pinned)
    stage = ctx.stage.value
    searcher = HyperOptSearch(
        space=HyperOptSearch.convert_search_space(space),
        metric="val_loss",
        mode="min",
        random_state_seed=execution.seed,
        n_initial_points=max(2, trials // 3),
    )
    progress = training_progress(
        stage, Search.TUNE.value, board, _chosen, max_t=ctx.max_epochs, total=trials
    )
    results = run_experiment(
        f"{stage}-tune",
        tune.with_parameters(tune_trial, ctx=ctx),
        execution,
        progress,
        tune.TuneConfig(
            search_alg=searcher,
            scheduler=asha(ctx.max_epochs, grace_period, reduction_factor),
            num_samples=trials,
            max_concurrent_trials=execution.max_concurrent,
        ),
    )
    retries = board.retries(stage, Search.TUNE.value)
    schedule = {"asha.grace_period": grace_period, "asha.reduction_factor": reduction_factor}
    records, finished = [], []
    for trial in results:
        record = _record(ctx, trial, schedule, retries)
        records.append(record)
        report = EpochReport.of_metrics(trial.metrics)
        if not trial.error and report is not None and finite(report.val_loss):
            completed = record.status is TrialStatus.COMPLETED
            finished.append((completed, report, trial))
    best = min(finished, key=lambda f: (not f[0], f[1].val_loss), default=None)
    return TuneOutcome(
        best=dict(best[2].config) if best else None,
        metrics=(
            {
                **best[1].model_dump(include=set(VALIDATION_FIGURES)),
                "training_iteration": best[1].epoch,
            }
            if best
            else None
        ),
        trials=len(records),
        stopped_early=sum(r.status is TrialStatus.STOPPED_EARLY for r in records),
        records=records,
    )


def _record(
    ctx: TuneContext, trial: Any, schedule: dict[str, Any], retries: dict[str, int]
) -> TrialRecord:
    report = EpochReport.of_metrics(trial.metrics)
    status = trained_status(trial.error, trial.metrics, ctx.max_epochs)
    used = apply_hyperparameters(ctx.configs[trial.config["pair"]], trial.config)
    variables = {
        **prefixed("model", used["model"]),
        **training_settings(used),
        **prefixed("optimizer", flat(used["optimizer"])),
        **prefixed("scheduler", used["scheduler"]),
        **prefixed("tune", trial.config),
        "train.batch_size": used["train"]["batch_size"],
        "train.max_epochs": ctx.max_epochs,
        **schedule,
    }
    trained = TrainedReport(last=report, val_loss_by_epoch=_history(trial, "val_loss"))
    return trial_record(
        ctx.stage, Search.TUNE, trial, status, variables, retries, report, trained=trained
    )


def _history(result: Any, metric: str) -> list[float | None]:
    """A trial's ``metric`` at each report (epoch), in order; None where it was not finite."""
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or metric not in frame:
        return []
    return [float(v) if finite(v) else None for v in frame[metric].tolist()]


def _chosen(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A trial's label (its model pair and hyperparameters) and what it chose."""
    config = dict(result.get("config") or {})
    rest = {k: v for k, v in config.items() if k != "pair"}
    return f"{config.get('pair', '?')} {short(rest)}", config


#: Two figures differ when they are further apart than this many standard errors (95 %).
Z95 = 1.96


@dataclass(frozen=True)
class TuneVerdict:
    """What the tune search's best trial shows on its validation complexes: whether it beats
    predicting the training labels' mean (its gain over that baseline, complex by complex,
    beyond ``Z95`` standard errors), and how many other trials it cannot be told from (their
    losses within ``Z95`` standard errors of the difference)."""

    verdict: Verdict
    tied: int
    words: str


def tune_verdict(outcome: TuneOutcome) -> TuneVerdict | None:
    """The verdict on ``outcome``'s best trial; None where its figures cannot give one (no
    trial finished, or it was saved before trials reported their standard errors)."""
    best = outcome.metrics
    if best is None or best.get("val_gain_se") is None or best.get("val_loss_se") is None:
        return None
    loss, se, baseline = best["val_loss"], best["val_loss_se"], best["val_baseline_loss"]
    n = best.get("val_complexes")
    on = f"on {n} validation complexes" if n else "on the validation complexes"
    if baseline - loss <= Z95 * best["val_gain_se"]:
        words = (
            f"no winner: the best trial's validation loss, {loss:.4g} ± {Z95 * se:.2g}, is no "
            f"better than predicting the training labels' mean ({baseline:.4g}) {on}; no "
            "configuration tried has learned, so none is chosen on that ground"
        )
        return TuneVerdict("no_better_than_mean", _tied(outcome, loss, se), words)
    tied = _tied(outcome, loss, se)
    if tied:
        words = (
            f"no winner: it beats predicting the mean ({loss:.4g} against {baseline:.4g}), but "
            f"{tied} other trial(s) are within the 95 % interval of its loss {on}: the profile "
            "holds one of them, not the best of them"
        )
        return TuneVerdict("indistinguishable", tied, words)
    words = (
        f"learned: validation loss {loss:.4g} ± {Z95 * se:.2g} against {baseline:.4g} for "
        f"predicting the mean, and better than every other trial that ran its budget {on}"
    )
    lower = _lower(outcome, loss)
    if lower:  # the answer prefers a trial that ran every epoch (docs/tuner.md)
        words += f"; {lower} trial(s) ASHA stopped early had reached a lower loss"
    return TuneVerdict("learned", 0, words)


def _finished(outcome: TuneOutcome) -> list[EpochReport]:
    """The last epoch of every trial that reported a finite validation loss."""
    return [
        r.trained.last
        for r in outcome.records
        if r.trained is not None and r.trained.last is not None and finite(r.trained.last.val_loss)
    ]


def _lower(outcome: TuneOutcome, loss: float) -> int:
    """Trials whose last loss is below the chosen one's: ones ASHA stopped early (the answer
    prefers a trial that ran its whole budget)."""
    return sum(1 for e in _finished(outcome) if e.val_loss < loss)


def _tied(outcome: TuneOutcome, loss: float, se: float) -> int:
    """Other finished trials whose last loss the validation set cannot tell from ``loss``."""
    others = _finished(outcome)
    best = next((e for e in others if e.val_loss == loss), None)
    return sum(
        1
        for e in others
        if e is not best
        and e.val_loss_se is not None
        and abs(e.val_loss - loss) <= Z95 * math.sqrt(se**2 + e.val_loss_se**2)
    )
