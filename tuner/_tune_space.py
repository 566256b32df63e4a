"""The tune search's space and its translation, in one place: which optimizer/scheduler pairs it
chooses from, which hyperparameters it searches (less those the job pins itself), and how a
trial's point becomes a training configuration (``apply_hyperparameters``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import tune

from model import ConfigError, TrainConfig, load_train_config, parse_override
from stagetune_api import JobSpec
from tuner._stages import merge_tree

log = logging.getLogger(__name__)

#: What the tune search chooses from unless the job pins one with ``optimizer=...``.
TUNE_OPTIMIZERS = ("adamw", "adam", "sgd")
TUNE_SCHEDULERS = ("cosine", "onecycle", "none")

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


def pinned_keys(spec: JobSpec) -> frozenset[str]:
    """Optimizer keys the job sets itself (``optimizer.lr=0.01``): the tune search keeps them."""
    keys = (o.split("=", 1)[0].split(".") for o in spec.overrides)
    return frozenset(k[1] for k in keys if len(k) > 1 and k[0] == "optimizer")


def pair_configs(
    spec: JobSpec,
    base: TrainConfig,
    knobs: dict[str, Any],
    batch_size: int,
    config_dir: Path | None = None,
    max_atoms_per_batch: int | None = None,
) -> dict[str, dict[str, Any]]:
    """The training config of each optimizer/scheduler pair the tune search may choose, with the
    chosen model and batches (its atom budget, when it has one). A group the job pins
    (``optimizer=sgd``) is not searched."""
    groups = ("optimizer", "scheduler")
    pinned = dict(parse_override(o) for o in spec.overrides if o.split("=", 1)[0] in groups)
    optimizers = [pinned["optimizer"]] if "optimizer" in pinned else TUNE_OPTIMIZERS
    schedulers = [pinned["scheduler"]] if "scheduler" in pinned else TUNE_SCHEDULERS
    settings: dict[str, Any] = {
        "data.source": base.data.source,
        "data.max_atoms": base.data.max_atoms,
        "train.batch_size": batch_size,
        "train.max_atoms_per_batch": max_atoms_per_batch,
        **{f"model.{k}": v for k, v in knobs.items()},
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


def apply_hyperparameters(tree: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A composed training config (one of ``pair_configs``) with a tune trial's hyperparameters:
    ``lr_factor`` scales the optimizer's own lr, ``clip_grad_norm`` 0 is none."""
    optimizer = tree["optimizer"]
    values: dict[str, Any] = {}
    if "lr_factor" in params:
        values["lr"] = optimizer["lr"] * params["lr_factor"]
    if "warmup_steps" in params:
        values["warmup_steps"] = params["warmup_steps"]
    if "clip_grad_norm" in params:
        values["clip_grad_norm"] = params["clip_grad_norm"] or None
    if "lookahead" in params:
        values["lookahead"] = {"enabled": params["lookahead"]}
    if "weight_decay" in params and "weight_decay" in optimizer:
        values["weight_decay"] = params["weight_decay"]
    return merge_tree(tree, {"optimizer": values})
