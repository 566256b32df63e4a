"""The training configuration's specs (``TrainConfig`` and its sections), validated and frozen.

They are composed from ``configs/`` by ``model._compose``; the optimizer section is checked
against the signature of the ``torch.optim`` class it names.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

GROUPS = ("optimizer", "scheduler")
_PROFILE_META_KEY = "meta"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    """Size knobs and options of ``AffinityViSNet``."""

    hidden_channels: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_rbf: int = Field(gt=0)
    cutoff: float = Field(gt=0)
    max_num_neighbors: int = Field(gt=0)
    lmax: Literal[1, 2]
    vecnorm_type: Literal["max_min"] | None
    trainable_rbf: bool
    vertex: bool
    reduce_op: Literal["sum", "mean"]

    @model_validator(mode="after")
    def _heads_divide_channels(self) -> ModelSpec:
        if self.hidden_channels % self.num_heads:
            raise ValueError(
                f"hidden_channels={self.hidden_channels} must be a multiple of "
                f"num_heads={self.num_heads}"
            )
        return self


class LookaheadSpec(_Spec):
    enabled: bool
    alpha: float = Field(gt=0, le=1)
    k: int = Field(gt=0)


#: The default of ``auto_param_groups.no_decay_patterns``: with the rule that 1-D tensors take no
#: decay, exactly the parameter groups of ``auto_param_groups: true`` before the key had fields.
NO_DECAY_PATTERNS = ("*.bias",)


class AutoParamGroupsSpec(_Spec):
    """Parameter groups for weight decay. With ``enabled``, 1-D tensors (biases, norm scales) and
    the parameters whose dotted names match one of ``no_decay_patterns`` (shell-style,
    ``fnmatch``) get ``override_no_decay_weight`` as their weight decay; the rest keep the
    optimizer's ``weight_decay``. A bare ``true`` / ``false`` is ``enabled`` with the defaults."""

    enabled: bool
    no_decay_patterns: tuple[str, ...] = NO_DECAY_PATTERNS
    override_no_decay_weight: float = Field(default=0.0, ge=0)

    @property
    def is_shorthand(self) -> bool:
        """Whether a bare ``true`` / ``false`` says all of it."""
        return (self.no_decay_patterns, self.override_no_decay_weight) == (NO_DECAY_PATTERNS, 0.0)


class OptimizerSpec(BaseModel):
    """The optimizer contract; every other key is a hyperparameter of ``torch.optim.<type>``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    type: str
    auto_param_groups: AutoParamGroupsSpec
    lookahead: LookaheadSpec
    scheduler_hook: Literal["step", "epoch"]
    warmup_steps: int = Field(ge=0)
    clip_grad_norm: float | None = Field(gt=0)
    accumulate_steps: int = Field(gt=0)
    precision_safe: bool
    bf16_preferred: bool
    fused: bool
    detect_anomaly: bool
    log_config: bool
    export_json: bool | str
    hash_to_debuglog: bool = True

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @field_validator("export_json", mode="before")
    @classmethod
    def _switch_or_path(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
            return value
        raise ValueError(
            f"must be true (config.json in the run folder), false, or a path: a .json file or "
            f"a folder (got {value!r})"
        )

    @field_validator("auto_param_groups", mode="before")
    @classmethod
    def _bare_switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value

    @field_serializer("auto_param_groups")
    def _shorthand(self, value: AutoParamGroupsSpec) -> bool | dict[str, Any]:
        """The defaults are written as the bare switch, as every configuration was before the key
        had fields: exported configurations and their hashes stay what they were."""
        if value.is_shorthand:
            return value.enabled
        return {
            "enabled": value.enabled,
            "no_decay_patterns": list(value.no_decay_patterns),
            "override_no_decay_weight": value.override_no_decay_weight,
        }

    @model_validator(mode="before")
    @classmethod
    def _check_hyperparameters(cls, data: Any) -> Any:
        """Keys beyond the contract must be arguments of the torch.optim class, of its types."""
        if not isinstance(data, Mapping) or not isinstance(data.get("type"), str):
            return data
        try:
            torch_class = optimizer_class(data["type"])
        except ValueError as exc:
            raise PydanticCustomError("optimizer_key", str(exc), {"key": "type"}) from None
        accepted = _constructor_defaults(torch_class)
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            if key not in accepted:
                keys = sorted({*cls.model_fields, *accepted})
                raise PydanticCustomError(
                    "optimizer_key",
                    "unknown key{hint}; accepted: the contract keys and torch.optim.{type}'s "
                    "arguments: {keys}",
                    {
                        "key": key,
                        "hint": did_you_mean(key, keys),
                        "type": data["type"],
                        "keys": ", ".join(keys),
                    },
                )
            problem = _type_problem(value, accepted[key])
            if problem:
                raise PydanticCustomError(
                    "optimizer_key",
                    "{problem} (got {shown})",
                    {"key": key, "problem": problem, "shown": repr(value)},
                )
        return data


class SchedulerSpec(_Spec):
    """Learning-rate schedule.

    ``warmup_steps: null`` takes the optimizer's ``warmup_steps``. The warm-up starts at
    ``warmup_start_factor`` times the optimizer's ``lr`` (for one-cycle, ``1/div_factor``); the
    schedule ends at ``min_lr``.
    """

    name: str
    type: Literal["cosine", "onecycle", "constant"]
    warmup_steps: int | None = Field(ge=0)
    warmup_start_factor: float = Field(gt=0, le=1)
    min_lr: float = Field(ge=0)
    anneal_strategy: Literal["cos", "linear"] = "cos"


class DataSpec(_Spec):
    """Where complexes come from and which atoms the model sees."""

    source: str
    labels: str | None
    max_atoms: int = Field(gt=0)
    pocket_radius: float = Field(gt=0)
    heavy_only: bool
    drop_waters: bool
    keep_metals: bool
    keep_hetero: bool
    cache_dir: str | None
    strict: bool
    val_fraction: float = Field(gt=0, lt=1)
    num_synthetic: int = Field(gt=1)
    seed: int


class LoopSpec(_Spec):
    """The training loop itself."""

    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    max_atoms_per_batch: int | None = Field(default=None, gt=0)
    eval_batch_size: int | None = Field(gt=0)
    seed: int
    device: str
    workers: int = Field(default=1, gt=0, le=1024)  # data-parallel processes, one device each
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    output_dir: str

    @model_validator(mode="after")
    def _known_device(self) -> LoopSpec:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device {self.device!r}: use auto, cpu, cuda or cuda:N")
        return self


class TrainConfig(_Spec):
    """Everything a training run depends on; its digest identifies the run."""

    model: ModelSpec
    optimizer: OptimizerSpec
    scheduler: SchedulerSpec
    data: DataSpec
    train: LoopSpec

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the whole configuration. A key added since hashes
        were first published (``_LATER``) counts only when it differs from its default, so a
        configuration that does not use it keeps the hash it always had."""
        tree = self.to_dict()
        for section, key, default in _LATER:
            if tree[section].get(key, default) == default:
                tree[section].pop(key, None)
        text = json.dumps(tree, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


#: (section, key, default) of the keys added to the configuration after its first release.
_LATER: tuple[tuple[str, str, Any], ...] = (
    ("train", "max_atoms_per_batch", None),
    ("train", "workers", 1),
    ("optimizer", "hash_to_debuglog", True),
)


def fixed_choices(spec: type[BaseModel] = TrainConfig, prefix: str = "") -> dict[str, list[Any]]:
    """Every configuration key whose values are a fixed set (a ``Literal``, maybe ``None``), by
    its dotted path, with the values it takes: what an editor offers as a choice."""
    out: dict[str, list[Any]] = {}
    for name, field in spec.model_fields.items():
        path = f"{prefix}{name}"
        options = typing.get_args(field.annotation) if _is_union(field.annotation) else ()
        inner = [o for o in options if o is not type(None)] or [field.annotation]
        if len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            out.update(fixed_choices(inner[0], f"{path}."))
        elif len(inner) == 1 and typing.get_origin(inner[0]) is Literal:
            nullable = [None] if type(None) in options else []
            out[path] = [*typing.get_args(inner[0]), *nullable]
    return out


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


# --- optimizer classes ------------------------------------------------------------------------


_UNSUPPORTED = {
    "LBFGS": "it needs a closure that re-evaluates the loss",
    "SparseAdam": "it needs sparse gradients",
}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """``torch.optim.<name>``; a ``ValueError`` lists the optimizers the loop can use."""
    if name in _UNSUPPORTED:
        raise ValueError(
            f"{name!r} cannot train this model: {_UNSUPPORTED[name]}; choose one of: "
            f"{', '.join(torch_optimizers())}"
        )
    cls = getattr(torch.optim, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)) or name.startswith(
        "_"
    ):
        raise ValueError(
            f"{name!r} is not a torch.optim optimizer; choose one of: "
            f"{', '.join(torch_optimizers())}"
        )
    return cls


def torch_optimizers() -> list[str]:
    return sorted(
        n
        for n, c in vars(torch.optim).items()
        if inspect.isclass(c)
        and issubclass(c, torch.optim.Optimizer)
        and n != "Optimizer"
        and n not in _UNSUPPORTED
    )


def _constructor_defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    return {
        n: (None if p.default is inspect.Parameter.empty else p.default)
        for n, p in params.items()
        if n not in ("self", "params") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand where torch's default is ``default``; None when it can."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if _is_number(default) or isinstance(default, torch.Tensor):
        return None if _is_number(value) else "must be a number"
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple) or len(value) != len(default):
            return f"must be a list of {len(default)} values, like {list(default)}"
        for v, d in zip(value, default, strict=True):
            if not (_is_number(v) or (v is None and d is None)):
                return f"must be a list of {len(default)} numbers, like {list(default)}"
    return None


def did_you_mean(key: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
