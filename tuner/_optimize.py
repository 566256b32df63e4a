"""``optimize``: a whole job, stage after stage, on a Ray cluster (a local one when none is given).

For each stage: the fit search, the stage's policy over its candidates, then the tune search for
the chosen model and batch. The best prototyping configuration seeds validation's fit search (and
validation's seeds production's). Finished searches are saved in the job folder, so the same
``job_id`` run again resumes where the job stopped. The files a job leaves are described in
``tuner._results``.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import ray

from model import ConfigError, TrainConfig, load_train_config, parse_override
from tuner._job import JobSpec
from tuner._local import choose
from tuner._progress import ProgressBoard
from tuner._results import (
    JobResult,
    MeasuredOn,
    ProbeFigures,
    Provenance,
    StageResult,
    TrialRecord,
    ValidationFigures,
    write_audit,
    write_json,
    write_profile,
    write_trials_csv,
)
from tuner._search import (
    Execution,
    FitOutcome,
    TuneOutcome,
    knobs_key,
    run_fit,
    run_tune,
    save_outcome,
)
from tuner._stages import Stage, StagesConfig, merge_tree
from tuner._trials import FitContext, TuneContext, apply_hyperparameters
from tuner.policies import DataStats, StageChoice

log = logging.getLogger(__name__)

#: What the tune search chooses from unless the job pins one with ``optimizer=...``.
TUNE_OPTIMIZERS = ("adamw", "adam", "sgd")
TUNE_SCHEDULERS = ("cosine", "onecycle", "none")

_FILES = ("result.json", "trials.csv", "audit.md", "job.log", "profiles")
_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

T = TypeVar("T", FitOutcome, TuneOutcome)


def optimize(
    spec: JobSpec,
    address: str | None = None,
    output: Path | None = None,
    config_dir: Path | None = None,
) -> JobResult:
    """Run (or resume) the job of ``spec``; its ``result.json`` as a ``JobResult``.

    Uses the Ray cluster this process is connected to, joins the one at ``address``, or starts a
    local one and shuts it down again. (The command line passes ``RAY_ADDRESS`` as ``address``,
    which is how a job started with ``ray job submit`` finds its cluster.)
    """
    started = time.time()
    job_dir = spec.job_dir
    _same_job(job_dir / "job.json", spec)
    job_dir.mkdir(parents=True, exist_ok=True)
    with _job_log(job_dir / "job.log"):
        result = _run_job(spec, address, config_dir, started)
    if output is not None:
        _copy_files(job_dir, output)
    return result


def _run_job(
    spec: JobSpec, address: str | None, config_dir: Path | None, started: float
) -> JobResult:
    job_dir = spec.job_dir
    log.info("job %s in %s", spec.job_id, job_dir)
    stages = spec.stages_config(config_dir)
    base = spec.train_config(config_dir)
    with _ray(address):
        execution = Execution(
            _trial_resources(spec), spec.max_concurrent, job_dir / "ray", spec.seed
        )
        # the job exists once its spec passed every check: a refused one can be run again
        write_json(job_dir / "job.json", spec.model_dump(mode="json"))
        execution.storage.mkdir(parents=True, exist_ok=True)
        log.info("each trial holds %s; at most %d at once", execution.resources,
                 spec.max_concurrent)  # fmt: skip
        board = ProgressBoard(job_dir / "progress.json", started)
        answers, records = _run_stages(spec, stages, base, execution, board, config_dir)
        hardware = _cluster_hardware(answers)
    finished = time.time()
    result = JobResult(
        job_id=spec.job_id,
        stages=answers,
        hardware=hardware,
        provenance=Provenance(
            versions=_versions(),
            seed=spec.seed,
            spec=spec.model_dump(mode="json"),
            started=_iso(started),
            finished=_iso(finished),
            elapsed_seconds=round(finished - started, 2),
            device_hours=_device_hours(records, execution.resources),
        ),
    )
    write_json(job_dir / "result.json", result.model_dump(mode="json"))
    write_trials_csv(job_dir / "trials.csv", records)
    write_audit(job_dir / "audit.md", result, records)
    log.info("job %s finished in %.0f s: %s", spec.job_id, finished - started,
             job_dir / "result.json")  # fmt: skip
    return result


@contextmanager
def _job_log(path: Path) -> Iterator[None]:
    """The job's log file: every INFO line of the packages, whatever the console shows."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in ("tuner", "model")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    except BaseException as exc:
        log.error("job stopped: %s", f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def _run_stages(
    spec: JobSpec,
    stages: StagesConfig,
    base: TrainConfig,
    execution: Execution,
    board: ProgressBoard,
    config_dir: Path | None,
) -> tuple[dict[Stage, StageResult], list[TrialRecord]]:
    answers: dict[Stage, StageResult] = {}
    records: list[TrialRecord] = []
    seeds: list[dict[str, Any]] = []
    data = _data_stats(base) if Stage.PRODUCTION in spec.stages else DataStats()
    saved = spec.job_dir / "searches"
    for stage in spec.stages:
        fit_ctx = FitContext(
            stage=stage,
            stages=stages,
            train_config=base.to_dict(),
            max_atoms=base.data.max_atoms,
            sample=spec.sample,
            memory_budget=spec.memory_budget,
            data=data,
        )
        fit = _once(
            saved / f"{stage.value}-fit.json",
            FitOutcome,
            partial(run_fit, fit_ctx, spec.fit_trials, execution, board, seeds),
        )
        records += fit.records
        choice = choose(stage, stages, fit.candidates, data)
        log.info("%s: %s", stage.value, _say(choice))
        tuned: TuneOutcome | None = None
        configs: dict[str, dict[str, Any]] = {}
        if choice.feasible:
            seeds = [choice.knobs]
            if spec.tune:
                configs = _tune_configs(spec, base, choice, config_dir)
                tune_ctx = TuneContext(stage, configs, spec.max_epochs, _pinned(spec))
                tuned = _once(
                    saved / f"{stage.value}-tune.json",
                    TuneOutcome,
                    partial(run_tune, tune_ctx, spec.tune_trials, execution, board,
                            spec.grace_period, spec.reduction_factor),
                    keep=lambda outcome: outcome.best is not None,
                )  # fmt: skip
                records += tuned.records
                if tuned.best is None:
                    log.warning(
                        "%s: no tune trial reported a finite validation loss; the profile "
                        "keeps the job's own optimizer settings",
                        stage.value,
                    )
        answers[stage] = _stage_result(spec, stage, choice, fit, tuned, configs, base)
    return answers, records


def _once(
    path: Path, kind: type[T], run: Callable[[], T], keep: Callable[[T], bool] = lambda _: True
) -> T:
    """A search's saved outcome, or run it and save it (when ``keep``: an outcome not kept is
    run again when the job is resumed)."""
    if path.is_file():
        log.info("%s: finished before, not run again", path.stem)
        return kind.from_json(json.loads(path.read_text()))
    outcome = run()
    if keep(outcome):
        save_outcome(path, outcome)
    return outcome


def _say(choice: StageChoice) -> str:
    if not choice.feasible:
        return choice.reason
    return (
        f"{choice.knobs} at batch {choice.batch_size} ({choice.reason}; "
        f"{choice.throughput or 0:.1f} samples/s, {choice.cycle_minutes or 0:.2f} min per cycle)"
    )


# --- configurations ---------------------------------------------------------------------------


def _pinned(spec: JobSpec) -> frozenset[str]:
    """Optimizer keys the job sets itself (``optimizer.lr=0.01``): the tune search keeps them."""
    keys = (o.split("=", 1)[0].split(".") for o in spec.overrides)
    return frozenset(k[1] for k in keys if len(k) > 1 and k[0] == "optimizer")


def _tune_configs(
    spec: JobSpec, base: TrainConfig, choice: StageChoice, config_dir: Path | None
) -> dict[str, dict[str, Any]]:
    """The training config of each optimizer/scheduler pair the tune search may choose, with the
    chosen model and batch. A group the job pins (``optimizer=sgd``) is not searched."""
    groups = ("optimizer", "scheduler")
    pinned = dict(parse_override(o) for o in spec.overrides if o.split("=", 1)[0] in groups)
    optimizers = [pinned["optimizer"]] if "optimizer" in pinned else TUNE_OPTIMIZERS
    schedulers = [pinned["scheduler"]] if "scheduler" in pinned else TUNE_SCHEDULERS
    settings: dict[str, Any] = {
        "data.source": base.data.source,
        "data.max_atoms": base.data.max_atoms,
        "train.batch_size": choice.batch_size,
        **{f"model.{k}": v for k, v in choice.knobs.items()},
    }
    configs, problems = {}, []
    for o in optimizers:
        for s in schedulers:
            overrides = [*spec.overrides, f"optimizer={o}", f"scheduler={s}"]
            try:
                config = load_train_config(overrides, config_dir=config_dir, settings=settings)
            except ConfigError as exc:
                problems.append(f"{o}/{s}: {exc}")
                continue
            configs[f"{o}/{s}"] = config.to_dict()
    for problem in problems:
        log.warning("the tune search leaves out %s", problem)
    if not configs:
        raise ConfigError("no optimizer and scheduler can train this job:\n" + "\n".join(problems))
    return configs


def _stage_result(
    spec: JobSpec,
    stage: Stage,
    choice: StageChoice,
    fit: FitOutcome,
    tuned: TuneOutcome | None,
    configs: dict[str, dict[str, Any]],
    base: TrainConfig,
) -> StageResult:
    probed = sum(c.probe is not None for c in fit.candidates)
    pruned = sum(c.probe is None for c in fit.candidates)
    if not choice.feasible:
        return StageResult(
            feasible=False, reason=choice.reason,
            model={**base.model.model_dump(mode="json"), **choice.knobs},
            batch_size=None, optimizer={}, scheduler={}, probe=None, validation=None,
            device=None, config_hash=None, profile=None, probed=probed, pruned=pruned,
        )  # fmt: skip
    reason = choice.reason
    if tuned is not None and tuned.best is not None:
        tree = apply_hyperparameters(configs[tuned.best["pair"]], tuned.best)
    else:  # no tune search, or none of its trials trained: the job's own training config
        tree = merge_tree(base.to_dict(), {"model": choice.knobs})
        if tuned is not None:
            reason += "; no tune trial finished training, so the optimizer is the job's own"
    # the profile trains like the job's base config (epochs, output folder), not like a trial
    tree = {**tree, "train": {**base.train.model_dump(mode="json"),
                              "batch_size": choice.batch_size}}  # fmt: skip
    config = TrainConfig.model_validate(tree)
    profile = Path("profiles") / f"{stage.value}.yaml"
    write_profile(
        spec.job_dir / profile,
        config.to_dict(),
        {"description": f"stagetune {stage.value} configuration of job {spec.job_id}",
         "stage": stage.value, "job_id": spec.job_id, "reason": reason},
    )  # fmt: skip
    candidate = next(c for c in fit.candidates if c.knobs == choice.knobs and c.probe is not None)
    probe = candidate.probe
    assert probe is not None
    where = fit.measured_on.get(knobs_key(choice.knobs), {})
    metrics = tuned.metrics if tuned is not None else None
    return StageResult(
        feasible=True,
        reason=reason,
        model=config.model.model_dump(mode="json"),
        batch_size=choice.batch_size,
        optimizer=config.optimizer.model_dump(mode="json"),
        scheduler=config.scheduler.model_dump(mode="json"),
        probe=ProbeFigures(
            max_batch_size=probe.max_batch_size,
            peak_bytes=probe.peak_bytes,
            limit_bytes=probe.limit_bytes,
            step_seconds=choice.step_seconds,
            cycle_minutes=choice.cycle_minutes,
            throughput=choice.throughput,
            capacity=probe.capacity,
            probe_steps=probe.probe_steps,
            sample_atoms=probe.sample_atoms,
        ),
        validation=(
            ValidationFigures(
                val_loss=metrics["val_loss"],
                val_rmse=metrics.get("val_rmse"),
                val_pearson=metrics.get("val_pearson"),
                epochs=metrics["training_iteration"],
                trials=tuned.trials,
                stopped_early=tuned.stopped_early,
            )
            if tuned is not None and metrics is not None
            else None
        ),
        device=MeasuredOn(**where) if where else None,
        config_hash=config.digest(),
        profile=str(profile),
        probed=probed,
        pruned=pruned,
    )


def _data_stats(base: TrainConfig) -> DataStats:
    """Production's data limits need the training set's size and its largest complex.

    Synthetic complexes never exceed ``max_atoms``, so only their number matters; a PDBbind
    root is read (through the processed-complex cache) for the atoms of each complex uncropped.
    """
    data = base.data
    if data.source == "synthetic":
        return DataStats(training_samples=round(data.num_synthetic * (1 - data.val_fraction)))
    from model import atom_policy, default_cache_dir, inspect_root

    summaries = inspect_root(
        data.source, atom_policy(data, max_atoms=10**7), cutoff=base.model.cutoff,
        max_num_neighbors=base.model.max_num_neighbors,
        labels_path=data.labels, cache_dir=data.cache_dir or default_cache_dir(),
        strict=data.strict,
    )  # fmt: skip
    counts = [
        (s.protein_atoms or 0) + (s.ligand_atoms or 0) for s in summaries if s.skipped is None
    ]
    if not counts:
        raise ConfigError(f"data={data.source}: no usable complex")
    return DataStats.from_atom_counts(
        counts, 100.0, training_samples=round(len(counts) * (1 - data.val_fraction))
    )


# --- Ray --------------------------------------------------------------------------------------


@contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Ray for the job: the cluster this process is connected to, the one at ``address``, or a
    new local instance (``"local"``: never a cluster some earlier ``ray start`` left behind)."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address or "local", dashboard_host="127.0.0.1", configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _trial_resources(spec: JobSpec) -> dict[str, float]:
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if spec.gpus_per_trial > 0 and not any(n.get("GPU", 0.0) > 0 for n in nodes):
        log.warning("no node of the cluster has a GPU: trials probe and train on CPUs")
    return spec.trial_bundle(nodes)


def _cluster_hardware(answers: dict[Stage, StageResult]) -> dict[str, Any]:
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n["Resources"]
        nodes.append({
            "node_id": n["NodeID"],
            "address": n.get("NodeManagerAddress"),
            "cpus": res.get("CPU", 0.0),
            "gpus": res.get("GPU", 0.0),
            "accelerator_types": sorted(k.split(":", 1)[1] for k in res
                                        if k.startswith("accelerator_type:")),
            "memory_bytes": int(res.get("memory", 0)),
        })  # fmt: skip
    devices = sorted({a.device.device_model for a in answers.values()
                      if a.device is not None and a.device.device_model})  # fmt: skip
    return {"nodes": nodes, "devices_measured": devices}


def _device_hours(records: list[TrialRecord], resources: dict[str, float]) -> float:
    devices = resources.get("GPU") or 1.0
    return round(sum(r.seconds for r in records) * devices / 3600.0, 6)


# --- files ------------------------------------------------------------------------------------


def _same_job(path: Path, spec: JobSpec) -> None:
    """A job id names one job: running it again must ask for the same job (and resumes it)."""
    if not path.is_file():
        return
    stored = json.loads(path.read_text())
    current = spec.model_dump(mode="json")
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if changed:
        raise ConfigError(
            f"job {spec.job_id} exists in {path.parent} with other settings "
            f"({', '.join(changed)}): run it with the same options to resume it, or choose "
            "another job id"
        )
    log.info("resuming job %s", spec.job_id)


def _copy_files(job_dir: Path, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        source = job_dir / name
        if source.is_dir():
            shutil.copytree(source, output / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, output / name)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("stagetune", "torch", "torch-geometric", "ray", "hyperopt"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds")
