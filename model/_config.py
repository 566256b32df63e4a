"""Training configuration: YAML in ``configs/``, composed and overridden, validated into specs.

Composition, later sources winning:

1. ``configs/train.yaml`` (its ``defaults`` pick one file per group, e.g. ``optimizer: adamw``);
2. the chosen ``configs/<group>/<name>.yaml`` files;
3. a profile (``--profile FILE``: YAML or JSON with any of the sections, or the same as a
   mapping), e.g. a run's exported ``config.json``, which replays that run;
4. group switches from the command line, ``optimizer=sgd`` (the whole section is replaced);
5. dotted overrides, ``optimizer.lr=0.01 model.hidden_channels=64``; values are YAML.

The result is validated into a frozen ``TrainConfig``. A wrong key, value or group name raises
``ConfigError`` naming the key, where its value came from, and what would be accepted.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from stat import S_ISREG
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from model._errors import ConfigError

GROUPS = ("optimizer", "scheduler")
_PROFILE_META_KEY = "meta"


def default_config_dir() -> Path:
    """``configs/`` at the root of the source tree (the project is installed from it)."""
    return _CONFIG_DIR


_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


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


class OptimizerSpec(BaseModel):
    """The optimizer contract; every other key is a hyperparameter of ``torch.optim.<type>``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    type: str
    auto_param_groups: bool
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
    export_json: bool

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

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
                    {"key": key, "hint": _did_you_mean(key, keys), "type": data["type"],
                     "keys": ", ".join(keys)},
                )  # fmt: skip
            problem = _type_problem(value, accepted[key])
            if problem:
                raise PydanticCustomError(
                    "optimizer_key", "{problem} (got {shown})",
                    {"key": key, "problem": problem, "shown": repr(value)},
                )  # fmt: skip
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
    eval_batch_size: int | None = Field(gt=0)
    seed: int
    device: str
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
        """SHA-256 of the canonical JSON of the whole configuration."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


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


# --- YAML and composition ---------------------------------------------------------------------


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's when PyYAML has it) that also reads ``1e-3`` as a float (YAML 1.1
    wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


FileVersion = tuple[str, int, int]
"""A file's absolute path, modification time (ns) and size."""

_parsed: dict[FileVersion, dict[str, Any]] = {}
_reads: ContextVar[list[FileVersion] | None] = ContextVar("config_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[list[FileVersion]]:
    """The versions of the YAML files ``read_yaml_mapping`` reads inside the block."""
    reads: list[FileVersion] = []
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def unchanged(versions: Iterable[FileVersion]) -> bool:
    """Whether every file is still at its recorded version."""
    for path, mtime, size in versions:
        try:
            stat = os.stat(path)
        except OSError:
            return False
        if (stat.st_mtime_ns, stat.st_size) != (mtime, size):
            return False
    return True


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; a copy the caller may change. Parsed once per version of the
    file, known by its modification time and size (a job composes a dozen files, and the
    service composes a job per request); an edit that keeps both is not seen."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise ConfigError(f"{path}: file not found")
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    reads = _reads.get()
    if reads is not None:
        reads.append(key)
    data = _parsed.get(key)
    if data is None:
        data = parse_yaml(path.read_text(), str(path))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: must hold a mapping of keys to values, not {type(data).__name__}"
            )
        if len(_parsed) >= 256:
            _parsed.clear()
        _parsed[key] = data
    return _copy_tree(data)  # type: ignore[no-any-return]


def _copy_tree(value: Any) -> Any:
    """A copy of a tree of parsed YAML: new dicts and lists, the same (immutable) scalars."""
    if value is None or isinstance(value, str | int | float):  # most of a tree; no ABC check
        return value
    if isinstance(value, list | tuple):
        return [_copy_tree(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _copy_tree(v) for k, v in value.items()}
    return value


def group_choices(config_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` into its key and its YAML-typed value."""
    key, sep, raw = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key.strip()):
        raise ConfigError(
            f"override {text!r} is not KEY=VALUE (for example optimizer=sgd or optimizer.lr=0.01)"
        )
    return key.strip(), parse_yaml(raw, f"override {text!r}") if raw.strip() else None


class _Composer:
    """A nested dict plus where each leaf's value came from."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.origin: dict[str, str] = {}

    def merge(self, data: Mapping[str, Any], origin: str, prefix: str = "") -> None:
        node = self._node(prefix)
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and isinstance(node.get(key), dict):
                self.merge(value, origin, path)
            else:
                node[key] = _copy_tree(value)
                self._mark(path, value, origin)

    def replace(self, section: str, data: Mapping[str, Any], origin: str) -> None:
        self.tree.pop(section, None)
        self.origin = {k: v for k, v in self.origin.items() if not k.startswith(section + ".")}
        self.merge({section: data}, origin)

    def set(self, path: str, value: Any, origin: str) -> None:
        *parents, leaf = path.split(".")
        node = self.tree
        for depth, key in enumerate(parents):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"{path}: {where} is a value, not a section ({origin})")
            node = child
        node[leaf] = value
        self.origin = {
            k: v for k, v in self.origin.items() if k != path and not k.startswith(path + ".")
        }
        self._mark(path, value, origin)

    def where(self, path: str) -> str | None:
        """Where the value at ``path`` came from: itself, a leaf below it, or a section above."""
        below = next((o for k, o in self.origin.items() if k.startswith(path + ".")), None)
        if path not in self.origin and below is not None:
            return below
        while path:
            if path in self.origin:
                return self.origin[path]
            path = path.rpartition(".")[0]
        return None

    def _node(self, prefix: str) -> dict[str, Any]:
        node = self.tree
        for key in filter(None, prefix.split(".")):
            node = node[key]
        return node

    def _mark(self, path: str, value: Any, origin: str) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                self._mark(f"{path}.{key}", child, origin)
        else:
            self.origin[path] = origin


def load_train_config(
    overrides: Sequence[str] = (),
    profile: str | Path | Mapping[str, Any] | None = None,
    config_dir: str | Path | None = None,
    settings: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Compose ``configs/`` with a profile and overrides; see the module docstring.

    ``settings`` are dotted keys with values already typed (command-line flags such as
    ``--data``): applied last, never parsed as YAML, so a folder named ``2020`` stays a string.
    """
    root = Path(config_dir) if config_dir else default_config_dir()
    if not (root / "train.yaml").is_file():
        raise ConfigError(f"{root}: no train.yaml here; pass the configs folder of the project")
    base_file = root / "train.yaml"
    base = read_yaml_mapping(base_file)
    chosen = dict(base.pop("defaults", {}) or {})
    parsed = [(text, *parse_override(text)) for text in overrides]

    composer = _Composer()
    composer.merge(base, str(base_file))
    for group in GROUPS:
        if group in chosen:
            _use_group(composer, root, group, chosen[group], f"defaults of {base_file}")
    if profile is not None:
        if isinstance(profile, Mapping):
            data, origin = _copy_tree(profile), "the given configuration"
        else:
            data, origin = read_yaml_mapping(Path(profile)), f"profile {profile}"
        data.pop(_PROFILE_META_KEY, None)
        for group in GROUPS:
            # A profile's section builds on the file of its own name (a run with rmsprop keeps
            # nothing of adamw); a name with no file replaces the section whole.
            name = data.get(group, {}).get("name") if isinstance(data.get(group), dict) else None
            if name in group_choices(root, group):
                _use_group(composer, root, group, name, origin)
            elif name is not None:
                composer.replace(group, {}, origin)
        composer.merge(data, origin)
    for text, key, value in parsed:
        if key in GROUPS:
            _use_group(composer, root, key, value, f"command line {text!r}")
    for text, key, value in parsed:
        if key not in GROUPS:
            composer.set(key, value, f"command line {text!r}")
    for key, value in (settings or {}).items():
        composer.set(key, value, f"command-line flag for {key}")
    try:
        return TrainConfig.model_validate(composer.tree)
    except ValidationError as exc:
        raise _explain(exc, composer) from None


def _use_group(composer: _Composer, root: Path, group: str, name: Any, origin: str) -> None:
    path = root / group / f"{name}.yaml"
    try:
        if not (isinstance(name, str) and re.fullmatch(r"[\w.-]+", name)):
            raise ConfigError(str(path))
        data = read_yaml_mapping(path)
    except ConfigError:
        if isinstance(name, str) and name in group_choices(root, group):
            raise  # the file is there but broken: say so
        choices = group_choices(root, group)
        raise ConfigError(
            f"{group}={name}: unknown {group} ({origin}); choose one of: {', '.join(choices)}"
        ) from None
    composer.replace(group, data, str(path))


def _explain(exc: ValidationError, composer: _Composer) -> ConfigError:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if "key" in error.get("ctx", {}):
            loc.append(str(error["ctx"]["key"]))
        key = ".".join(loc) or "(top level)"
        origin = composer.where(key)
        where = f" ({origin})" if origin else ""
        if error["type"] == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            hint = _did_you_mean(loc[-1], allowed)
            problems.append((key, f"unknown key{hint}{where}; accepted keys: {', '.join(allowed)}"))
        elif error["type"] == "missing":
            problems.append((key, f"missing{where}"))
        else:
            message = error["msg"].removeprefix("Value error, ")
            plain = error["type"] in ("value_error", "optimizer_key")
            shown = "" if plain else f" (got {error.get('input')!r})"
            problems.append((key, f"{message}{shown}{where}"))
    lines = [f"{key}: {message}" for key, message in problems]
    return ConfigError("invalid configuration:\n  " + "\n  ".join(lines), problems)


def _did_you_mean(key: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(loc: Sequence[str]) -> list[str]:
    cls: type[BaseModel] = TrainConfig
    for part in loc:
        annotation = cls.model_fields[part].annotation
        if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return sorted(cls.model_fields)
