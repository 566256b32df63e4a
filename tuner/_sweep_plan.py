"""A sweep's plan: every combination of the listed values (``key=a,b,c``), composed as
``stagetune train`` composes one, its optimizer and schedule built, before any trial starts; and
how the trials run (``SweepOptions``). Running it is ``tuner._sweep``'s.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from model import (
    ConfigError,
    TrainConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    load_train_config,
    split_sweep,
)
from stagetune_api import SWEEP_FIELDS, JobSpec
from tuner._job import invalid_spec

MAX_RUNS = 10_000


@dataclass(frozen=True)
class SweepRun:
    """One combination: the text of each swept value, and the configuration it composes to."""

    index: int
    values: dict[str, str]
    config: dict[str, Any]  # TrainConfig.to_dict(), output_dir absolute
    digest: str

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "(no list)"

    @property
    def epochs(self) -> int:
        return int(self.config["train"]["epochs"])

    @property
    def run_dir(self) -> Path:
        return Path(self.config["train"]["output_dir"]) / self.digest[:12]


@dataclass(frozen=True)
class SweepPlan:
    keys: tuple[str, ...]  # the swept keys, in the order given
    runs: tuple[SweepRun, ...]
    output_dir: Path


@dataclass(frozen=True)
class SweepOptions:
    """How the trials run. ``trials`` is a ``JobSpec`` for its ``SWEEP_FIELDS`` only, so they
    have a job's bounds, and one trial's resources are checked against the cluster as a job's."""

    trials: JobSpec = field(default_factory=lambda: JobSpec(job_id="sweep"))
    asha: bool = False
    measure_memory: bool = False

    @classmethod
    def of(
        cls, given: Mapping[str, Any], asha: bool = False, measure_memory: bool = False
    ) -> SweepOptions:
        """Options from ``SWEEP_FIELDS`` values (None: not given, the job's default)."""
        unknown = sorted(set(given) - set(SWEEP_FIELDS))
        if unknown:
            raise ConfigError(
                f"not sweep options: {', '.join(unknown)}; accepted: {', '.join(SWEEP_FIELDS)}"
            )
        values = {k: v for k, v in given.items() if v is not None}
        try:
            trials = JobSpec.model_validate({"job_id": "sweep", **values})
        except ValidationError as exc:
            raise invalid_spec(exc, "sweep options") from None
        return cls(trials, asha, measure_memory)


def plan_sweep(
    overrides: Sequence[str],
    profile: str | Path | Mapping[str, Any] | None = None,
    config_dir: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> SweepPlan:
    """Every combination of the listed values (``key=a,b,c``; see ``model.split_sweep``),
    composed as ``stagetune train`` composes one, and checked before anything runs."""
    split = [split_sweep(text) for text in overrides]
    keys = [key for key, values in split if len(values) > 1]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"{', '.join(twice)}: listed twice; give each swept key one list")
    if "train.output_dir" in keys:
        raise ConfigError(
            "train.output_dir cannot be swept: a sweep writes to one folder (--output)"
        )
    count = math.prod(len(values) for _, values in split)
    if count > MAX_RUNS:
        raise ConfigError(f"the lists make {count:,} runs; a sweep runs at most {MAX_RUNS:,}")
    runs: list[SweepRun] = []
    seen: dict[str, SweepRun] = {}
    models: dict[str, torch.nn.Module] = {}
    compose = partial(load_train_config, profile=profile, config_dir=config_dir, settings=settings)
    for index, chosen in enumerate(itertools.product(*(values for _, values in split))):
        values = {k: v for (k, vs), v in zip(split, chosen, strict=True) if len(vs) > 1}
        texts = [f"{k}={v}" for (k, _), v in zip(split, chosen, strict=True)]
        run = _compose(index, values, partial(compose, texts), models)
        if run.digest in seen:
            raise ConfigError(
                f"{seen[run.digest].label} and {run.label} compose the same "
                f"configuration: list each value once"
            )
        seen[run.digest] = run
        runs.append(run)
    output_dir = Path(runs[0].config["train"]["output_dir"])
    return SweepPlan(tuple(keys), tuple(runs), output_dir)


def _compose(
    index: int, values: dict[str, str], compose: Callable[[], TrainConfig], models: dict[str, Any]
) -> SweepRun:
    """One combination as a checked configuration, its paths made absolute (trials run in
    folders of their own)."""
    label = " ".join(f"{k}={v}" for k, v in values.items())
    try:
        config = compose()
        tree = config.to_dict()
        for section, key in (("train", "output_dir"), ("optimizer", "export_json")):
            if isinstance(tree[section][key], str):
                tree[section][key] = str(Path(tree[section][key]).expanduser().resolve())
        config = TrainConfig.model_validate(tree)
        _check_builds(config, models)
    except ConfigError as exc:
        raise ConfigError(f"sweep run {label}: {exc}", exc.problems) from None
    return SweepRun(index, values, config.to_dict(), config.digest())


def _check_builds(config: TrainConfig, models: dict[str, torch.nn.Module]) -> None:
    """torch's own checks of the optimizer's values (a negative lr, nesterov without momentum)
    and of the schedule, on the run's model, before any trial starts."""
    key = config.model.model_dump_json()
    if key not in models:
        models[key] = build_model(config.model)
    optimizer = build_optimizer(config.optimizer, models[key], torch.device("cpu"))
    build_scheduler(config.scheduler, config.optimizer, optimizer, total_steps=10)
