"""The two Ray Tune searches of a stage.

- ``run_fit``: HyperOpt over the stage's architecture space, one probe per trial, dominated
  configurations answered without a probe (``ProbeSearcher``); the stage's policy then chooses
  among the probed candidates.
- ``run_tune``: HyperOpt over training hyperparameters for the chosen model and batch, with ASHA
  stopping trials early on validation loss.

Each search is one Tune experiment under ``<job>/ray/<stage>-<search>``; an interrupted one is
restored from there. Its outcome is saved as ``<job>/searches/<stage>-<search>.json``, so a
resumed job does not run a finished search again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.hyperopt import HyperOptSearch

from model import ModelSpec, build_model, count_parameters
from tuner._probe import ProbeResult
from tuner._progress import ProgressBoard, SearchProgress
from tuner._results import TrialRecord
from tuner._searcher import ProbeSearcher
from tuner._stages import Stage
from tuner._trials import (
    SCORE,
    FitContext,
    TuneContext,
    apply_hyperparameters,
    fit_trial,
    no_memory_failure,
    probe_from_metrics,
    tune_trial,
)
from tuner.policies import Candidate, capacity_cap

log = logging.getLogger(__name__)

#: The tune search's space (beside the optimizer/scheduler pair), each entry with the optimizer
#: key it sets. ``lr_factor`` scales the optimizer file's own ``lr``, so one range suits SGD and
#: Adam alike; ``clip_grad_norm`` 0 means no clipping.
TUNE_SPACE: dict[str, tuple[str, Any]] = {
    "lr_factor": ("lr", tune.loguniform(0.2, 5.0)),
    "weight_decay": ("weight_decay", tune.loguniform(1e-6, 1e-2)),
    "warmup_steps": ("warmup_steps", tune.choice([0, 10, 50])),
    "clip_grad_norm": ("clip_grad_norm", tune.choice([0.0, 1.0, 10.0])),
    "lookahead": ("lookahead", tune.choice([False, True])),
}


def tune_space(pairs: list[str], pinned: frozenset[str]) -> dict[str, Any]:
    """The tune search's space: one choice over the optimizer/scheduler pairs, then every entry
    of ``TUNE_SPACE`` whose optimizer key the job does not set itself (``pinned``)."""
    space = {"pair": tune.choice(pairs)}
    space.update({name: domain for name, (key, domain) in TUNE_SPACE.items() if key not in pinned})
    return space


@dataclass(frozen=True)
class Execution:
    """How trials run: resources of one trial, concurrency, retries, where experiments live."""

    resources: dict[str, float]
    max_concurrent: int
    storage: Path
    seed: int
    max_failures: int = 2


@dataclass
class FitOutcome:
    candidates: list[Candidate]
    measured_on: dict[str, dict[str, Any]]  # knobs key -> device, device_model, node_id
    records: list[TrialRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": [
                {"knobs": c.knobs, "probe": c.probe.to_json() if c.probe else None,
                 "pruned_by": c.pruned_by}
                for c in self.candidates
            ],
            "measured_on": self.measured_on,
            "records": [asdict(r) for r in self.records],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitOutcome:
        candidates = [
            Candidate(c["knobs"], ProbeResult.from_json(c["probe"]) if c["probe"] else None,
                      c["pruned_by"])
            for c in data["candidates"]
        ]  # fmt: skip
        records = [TrialRecord(**r) for r in data["records"]]
        return cls(candidates, data["measured_on"], records)


@dataclass
class TuneOutcome:
    best: dict[str, Any] | None  # the best trial's hyperparameters
    metrics: dict[str, Any] | None  # and its last validation figures
    trials: int
    stopped_early: int
    records: list[TrialRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "records": [asdict(r) for r in self.records]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TuneOutcome:
        return cls(**{**data, "records": [TrialRecord(**r) for r in data["records"]]})


def knobs_key(knobs: Mapping[str, Any]) -> str:
    return json.dumps(dict(knobs), sort_keys=True)


# --- fit ------------------------------------------------------------------------------------------


def run_fit(
    ctx: FitContext,
    trials: int,
    execution: Execution,
    board: ProgressBoard,
    seed_points: list[dict[str, Any]],
) -> FitOutcome:
    spec = ctx.stages.stages[ctx.stage]
    grid = list(spec.configurations())
    name = f"{ctx.stage.value}-fit"
    pruned_file = execution.storage / f"{name}.pruned.json"
    base_model = ctx.train_config["model"]
    searcher = fit_searcher(
        spec.policy, grid, execution.seed, seed_points,
        capacity=lambda knobs: capacity_of({**base_model, **knobs}),
        cap=capacity_cap(spec, ctx.data), record_to=str(pruned_file),
    )  # fmt: skip
    progress = SearchProgress(
        ctx.stage.value, "fit", board, _describe_probe, _best_probe,
        pruned=lambda: _count_json(pruned_file),
    )  # fmt: skip
    trainable = tune.with_parameters(fit_trial, ctx=ctx)
    results = _fit_experiment(
        name, trainable, execution, progress,
        tune.TuneConfig(
            search_alg=searcher,
            num_samples=min(trials, len(grid)),
            max_concurrent_trials=execution.max_concurrent,
        ),
    )  # fmt: skip
    outcome = FitOutcome([], {})
    retries = board.retries(ctx.stage.value, "fit")
    settings = {
        **_training_settings(ctx.train_config),
        "probe.sample": ctx.sample or "synthetic",
        "probe.memory_fraction": ctx.stages.memory_fraction,
        "probe.cycle_batches": ctx.stages.cycle_batches,
        "probe.max_batch_cap": ctx.stages.max_batch_size,
        "stage.policy": spec.policy,
        "stage.minutes_allowed": spec.minutes_allowed,
    }
    for trial in results:
        knobs = {k: trial.config[k] for k in grid[0]}
        metrics = trial.metrics or {}
        probe = probe_from_metrics(metrics)
        status = "error" if trial.error else "invalid" if metrics.get("invalid") else "probed"
        variables = {
            **_prefixed("model", {**base_model, **knobs}),
            **settings,
            **_probe_variables(probe),
            "probe.config_hash": metrics.get("config_hash"),
        }
        outcome.records.append(_record(ctx.stage, "fit", trial, status, variables, retries))
        if probe is not None:
            outcome.candidates.append(Candidate(knobs, probe))
            outcome.measured_on[knobs_key(knobs)] = {
                k: metrics.get(k) for k in ("device", "device_model", "node_id")
            }
    for item in json.loads(pruned_file.read_text()) if pruned_file.is_file() else []:
        knobs = item["knobs"]
        outcome.candidates.append(Candidate(knobs, None, pruned_by=item["failed"]))
        why = (
            _prefixed("pruned_by", item["failed"])
            if item["failed"] is not None
            else {"pruned.bound": item["bound"], "pruned.best": item["best"]}
        )
        variables = {**_prefixed("model", {**base_model, **knobs}), **settings, **why}
        outcome.records.append(
            TrialRecord(ctx.stage.value, "fit", f"pruned-{knobs_key(knobs)}", "pruned", variables)
        )
    log.info(
        "%s fit: %d probed, %d pruned without a probe, of %d configurations",
        ctx.stage.value, sum(r.status == "probed" for r in outcome.records),
        sum(r.status == "pruned" for r in outcome.records), len(grid),
    )  # fmt: skip
    return outcome


def fit_searcher(
    policy: str,
    grid: list[dict[str, Any]],
    seed: int,
    seed_points: list[dict[str, Any]],
    capacity: Callable[[dict[str, Any]], float],
    cap: float | None = None,
    record_to: str | None = None,
) -> ProbeSearcher:
    """The fit search's searcher for a stage's policy.

    TPE's first points are the previous stage's best (snapped to this space) and, for the
    throughput policy, the smallest configuration: the cheapest probe, and where the highest
    throughput usually is. For production, whose score is the parameter count when a model fits,
    a model's count (known without a probe) bounds its score: models smaller than one that
    already fits are not probed. A model above the data's ``cap`` can score nothing.
    """
    choices = {k: sorted({g[k] for g in grid}) for k in grid[0]}
    points = [_snap(p, choices) for p in seed_points]
    if policy == "time_bound_throughput":
        smallest = {k: v[0] for k, v in choices.items()}
        points += [] if smallest in points else [smallest]
    inner = HyperOptSearch(
        space=HyperOptSearch.convert_search_space({k: tune.choice(v) for k, v in choices.items()}),
        metric=SCORE,
        mode="max",
        points_to_evaluate=points or None,
        n_initial_points=max(2, min(5, len(grid) // 4)),
        gamma=0.5,
        random_state_seed=seed,
    )

    def bound(knobs: dict[str, Any]) -> float:
        count = capacity(knobs)
        return 0.0 if cap is not None and count > cap else count

    return ProbeSearcher(
        inner, grid, SCORE, no_memory_failure, record_to=record_to,
        bound=bound if policy == "largest_capacity" else None,
    )  # fmt: skip


def capacity_of(model: dict[str, Any]) -> float:
    """Trainable parameters of a model spec, counted on the meta device (no memory, no probe);
    infinite for a spec that is not a valid model, so that it is probed and reported."""
    try:
        spec = ModelSpec.model_validate(model)
    except ValidationError:
        return math.inf
    with torch.device("meta"):
        return float(count_parameters(build_model(spec)))


def _snap(point: Mapping[str, Any], choices: Mapping[str, list[Any]]) -> dict[str, Any]:
    """A previous stage's best as a point of this space: each knob at its nearest choice."""
    out = {}
    for knob, values in choices.items():
        wanted = point.get(knob, values[0])
        out[knob] = min(values, key=lambda v: (abs(v - wanted), v))
    return out


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


def _training_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's figures depend on beyond its own knobs: the data and the training loop."""
    data, train, optimizer = config["data"], config["train"], config["optimizer"]
    return {
        "data.source": data["source"],
        "data.max_atoms": data["max_atoms"],
        "train.precision": train["precision"],
        "train.accumulate_steps": optimizer["accumulate_steps"],
        "train.base_optimizer": optimizer["name"],
    }


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}


def _probe_variables(probe: Any) -> dict[str, Any]:
    if probe is None:
        return {}
    keys = ("fits", "max_batch_size", "peak_bytes", "limit_bytes", "fixed_bytes",
            "bytes_per_sample", "step_seconds", "cycle_minutes", "throughput", "capacity",
            "probe_steps", "device", "sample_atoms")  # fmt: skip
    return {f"probe.{k}": getattr(probe, k) for k in keys}


def _describe_probe(result: dict[str, Any]) -> str:
    knobs = result.get("config", {})
    probe = json.loads(result["probe"]) if result.get("probe") else None
    if result.get("invalid"):
        return f"{knobs} is not a valid model: {result['invalid']}"
    if not probe or not probe.get("fits"):
        return f"{knobs} does not fit"
    return (
        f"{knobs} batch {probe['max_batch_size']}, {probe['throughput']:.1f} samples/s, "
        f"{probe['cycle_minutes']:.1f} min/cycle, {probe['capacity']:,} parameters on "
        f"{result.get('device_model')}"
    )


def _best_probe(results: list[dict[str, Any]]) -> str | None:
    scored = [r for r in results if r.get(SCORE)]
    if not scored:
        return None
    best = max(scored, key=lambda r: r[SCORE])
    return f"{best.get('config')} score {best[SCORE]:,.1f}"


def _count_json(path: Path) -> int:
    return len(json.loads(path.read_text())) if path.is_file() else 0


# --- tune -----------------------------------------------------------------------------------------


def run_tune(
    ctx: TuneContext,
    trials: int,
    execution: Execution,
    board: ProgressBoard,
    grace_period: int,
    reduction_factor: float,
) -> TuneOutcome:
    space = tune_space(sorted(ctx.configs), ctx.pinned)
    name = f"{ctx.stage.value}-tune"
    scheduler = ASHAScheduler(
        time_attr="training_iteration", metric="val_loss", mode="min", max_t=ctx.max_epochs,
        grace_period=min(grace_period, ctx.max_epochs), reduction_factor=reduction_factor,
    )  # fmt: skip
    searcher = HyperOptSearch(
        space=HyperOptSearch.convert_search_space(space),
        metric="val_loss",
        mode="min",
        random_state_seed=execution.seed,
        n_initial_points=max(2, trials // 3),
    )
    progress = SearchProgress(
        ctx.stage.value, "tune", board, _describe_training, _best_training, max_t=ctx.max_epochs
    )
    results = _fit_experiment(
        name, tune.with_parameters(tune_trial, ctx=ctx), execution, progress,
        tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=trials,
            max_concurrent_trials=execution.max_concurrent,
        ),
    )  # fmt: skip
    retries = board.retries(ctx.stage.value, "tune")
    records, finished = [], []
    for trial in results:
        metrics = trial.metrics or {}
        epochs = metrics.get("training_iteration", 0)
        status = "error" if trial.error else (
            "completed" if epochs >= ctx.max_epochs else "stopped_early"
        )  # fmt: skip
        used = apply_hyperparameters(ctx.configs[trial.config["pair"]], trial.config)
        variables = {
            **_prefixed("model", used["model"]),
            **_training_settings(used),
            **_prefixed("optimizer", _flat(used["optimizer"])),
            **_prefixed("scheduler", used["scheduler"]),
            **_prefixed("tune", trial.config),
            "train.batch_size": used["train"]["batch_size"],
            "train.max_epochs": ctx.max_epochs,
            "train.epochs_run": epochs,
            "asha.grace_period": grace_period,
            "asha.reduction_factor": reduction_factor,
            **{f"result.{k}": metrics.get(k) for k in _VALIDATION},
            "result.val_loss_by_epoch": _history(trial, "val_loss"),
        }
        records.append(_record(ctx.stage, "tune", trial, status, variables, retries))
        if not trial.error and _finite(metrics.get("val_loss")):
            finished.append((status == "completed", metrics["val_loss"], trial))
    best = min(finished, key=lambda f: (not f[0], f[1]), default=None)
    return TuneOutcome(
        best=dict(best[2].config) if best else None,
        metrics=(
            {k: best[2].metrics.get(k) for k in (*_VALIDATION, "training_iteration")}
            if best
            else None
        ),
        trials=len(records),
        stopped_early=sum(r.status == "stopped_early" for r in records),
        records=records,
    )


_VALIDATION = ("val_loss", "val_rmse", "val_pearson", "train_loss", "config_hash")


def _history(result: Any, metric: str) -> list[float | None]:
    """A trial's ``metric`` at each report (epoch), in order; None where it was not finite."""
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or metric not in frame:
        return []
    return [float(v) if _finite(v) else None for v in frame[metric].tolist()]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _describe_training(result: dict[str, Any]) -> str:
    return (
        f"{result.get('config')} val_loss {result.get('val_loss', float('nan')):.4f} after "
        f"{result.get('training_iteration')} epoch(s)"
    )


def _best_training(results: list[dict[str, Any]]) -> str | None:
    losses = [r["val_loss"] for r in results if _finite(r.get("val_loss"))]
    return f"val_loss {min(losses):.4f}" if losses else None


# --- shared ---------------------------------------------------------------------------------------


def _fit_experiment(
    name: str,
    trainable: Any,
    execution: Execution,
    progress: SearchProgress,
    tune_config: tune.TuneConfig,
) -> list[Any]:
    """Run (or resume) one Tune experiment; its trials as ``Result`` objects, in the order of
    their folders."""
    trainable = tune.with_resources(trainable, tune.PlacementGroupFactory([execution.resources]))
    path = execution.storage / name
    if tune.Tuner.can_restore(str(path)):
        log.info("%s: resuming the experiment in %s", name, path)
        tuner = tune.Tuner.restore(
            str(path), trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(execution.storage),
                failure_config=tune.FailureConfig(max_failures=execution.max_failures),
                callbacks=[progress],
                verbose=0,
            ),
        )
    grid = tuner.fit()
    return sorted((grid[i] for i in range(len(grid))), key=lambda r: str(r.path))


def _record(
    stage: Stage,
    search: str,
    result: Any,
    status: str,
    variables: dict[str, Any],
    retries: Mapping[str, int],
) -> TrialRecord:
    metrics = result.metrics or {}
    trial_id = str(metrics["trial_id"])
    return TrialRecord(
        stage=stage.value,
        search=search,
        trial_id=trial_id,
        status=status,
        variables=variables,
        node_id=metrics.get("node_id"),
        retries=retries.get(trial_id, 0),
        seconds=float(metrics.get("time_total_s") or 0.0),
        started=float(metrics.get("started") or 0.0),
    )


def save_outcome(path: Path, outcome: FitOutcome | TuneOutcome) -> None:
    """Write atomically: a job killed while saving leaves the previous file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(outcome.to_json()), indent=2) + "\n")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
