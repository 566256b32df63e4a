"""Stages and their specs, from ``configs/stages.yaml``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model import ConfigError, ModelSpec, default_config_dir, read_yaml_mapping
from stagetune_api import Knob, Range, Stage


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataLimits(_Spec):
    max_atoms_percentile: float = Field(default=100.0, gt=0, le=100)
    params_per_sample: float | None = Field(default=None, gt=0)


class StageSpec(_Spec):
    policy: str = Field(description="a policy of tuner.policies, by name")
    space: dict[str, Knob]
    target_minutes: float | None = Field(default=None, gt=0)
    window_minutes: float = Field(default=0.0, ge=0)
    data_limits: DataLimits = DataLimits()

    @model_validator(mode="after")
    def _consistent(self) -> StageSpec:
        from tuner.policies import POLICIES  # which names a policy, and what each needs

        policy = POLICIES.get(self.policy)
        if policy is None:
            raise ValueError(f"policy {self.policy!r} is not one of {', '.join(POLICIES)}")
        why = policy.problem(self)
        if why is not None:
            raise ValueError(why)
        knobs = sorted(ModelSpec.model_fields)
        for knob, values in self.space.items():
            if knob not in ModelSpec.model_fields:
                raise ValueError(
                    f"space.{knob} is not a model knob; choose from {', '.join(knobs)}"
                )
            if isinstance(values, list) and not values:
                raise ValueError(f"space.{knob} has no choices")
            why = values.problem() if isinstance(values, Range) else None
            if why is not None:
                raise ValueError(f"space.{knob}: {why}")
        return self

    @property
    def minutes_allowed(self) -> float | None:
        return None if self.target_minutes is None else self.target_minutes + self.window_minutes

    def configurations(self) -> Iterator[dict[str, Any]]:
        """Every point of the space, smallest first."""
        knobs = sorted(self.space)
        grids = [_values(self.space[k]) for k in knobs]
        for values in itertools.product(*grids):
            yield dict(zip(knobs, values, strict=True))


def _values(knob: Knob) -> list[int] | list[float]:
    return knob.values() if isinstance(knob, Range) else sorted(knob)


class StagesConfig(_Spec):
    cycle_batches: int = Field(gt=0)
    memory_fraction: float = Field(gt=0, le=1)
    min_batch_size: int = Field(gt=0)
    max_batch_size: int = Field(gt=0)
    throughput_tie: float = Field(ge=0, lt=1)
    stages: dict[Stage, StageSpec]

    @model_validator(mode="after")
    def _batch_bounds(self) -> StagesConfig:
        if self.min_batch_size > self.max_batch_size:
            raise ValueError(
                f"min_batch_size={self.min_batch_size} is above "
                f"max_batch_size={self.max_batch_size}"
            )
        return self


def load_stages(
    path: str | Path | None = None, overlays: Sequence[Mapping[str, Any]] = ()
) -> StagesConfig:
    """``configs/stages.yaml`` (or ``path``) as a typed config; errors name the file and key.

    ``overlays`` (a preset's ``stages`` section, a job's space overrides) are merged over the file
    in order; a knob of a space given there replaces that knob's choices whole.
    """
    path = Path(path) if path else default_config_dir() / "stages.yaml"
    data = read_yaml_mapping(path)
    for overlay in overlays:
        data = merge_tree(data, overlay)
    try:
        return StagesConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        where = f"{path} with overrides" if overlays else str(path)
        raise ConfigError(
            f"{where}: invalid stages configuration:\n  " + "\n  ".join(lines)
        ) from None


def merge_tree(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` merged in: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tree(out[key], value)
        else:
            out[key] = value
    return out
