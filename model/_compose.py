"""Composing a training configuration: ``configs/`` with a profile and overrides, validated into
a ``TrainConfig``.

Composition, later sources winning:

1. ``configs/train.yaml`` (its ``defaults`` pick one file per group, e.g. ``optimizer: adamw``);
2. the chosen ``configs/<group>/<name>.yaml`` files;
3. a profile (``--profile FILE``: YAML or JSON with any of the sections, or the same as a
   mapping), e.g. a run's exported ``config.json``, which replays that run;
4. group switches from the command line, ``optimizer=sgd`` (the whole section is replaced);
5. dotted overrides, ``optimizer.lr=0.01 model.hidden_channels=64``; values are YAML.

A wrong key, value or group name raises ``ConfigError`` naming the key, where its value came
from, and what would be accepted.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from model._config import TrainConfig, did_you_mean
from model._errors import ConfigError
from model._yaml import _Loader, copy_tree, parse_yaml, read_yaml_mapping
from stagetune_api import default_config_dir

GROUPS = ("optimizer", "scheduler")
_PROFILE_META_KEY = "meta"

#: Sections a bare true/false may stand for, and the key it sets: ``auto_param_groups: true``
#: is ``{enabled: true}``, so ``optimizer.auto_param_groups.enabled=false`` works over either.
_SHORTHANDS = {"optimizer.auto_param_groups": "enabled"}


def group_choices(config_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` into its key and its YAML-typed value."""
    key, raw = _split_key(text)
    return key, parse_yaml(raw, f"override {text!r}") if raw.strip() else None


def split_sweep(text: str) -> tuple[str, list[str]]:
    """``key=a,b,c`` into its key and the text of each value, as a sweep reads it (``stagetune
    train -m``). Commas inside brackets, braces or quotes do not separate values, so
    ``optimizer.betas=[0.9,0.95]`` is one value and ``optimizer.betas=[0.9,0.95],[0.8,0.9]`` two;
    a value that is not such a list is one value. YAML's own flow-sequence parser finds them."""
    key, raw = _split_key(text)
    if "," not in raw:
        return key, [raw]
    wrapped = f"[{raw}]"
    try:
        node = yaml.compose(wrapped, Loader=_Loader)
    except yaml.YAMLError:
        return key, [raw]
    if not isinstance(node, yaml.SequenceNode) or len(node.value) < 2:
        return key, [raw]
    values = [wrapped[n.start_mark.index : n.end_mark.index].strip() for n in node.value]
    return key, values


def _split_key(text: str) -> tuple[str, str]:
    key, sep, raw = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key.strip()):
        raise ConfigError(
            f"override {text!r} is not KEY=VALUE (for example optimizer=sgd or optimizer.lr=0.01)"
        )
    return key.strip(), raw


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
                node[key] = copy_tree(value)
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
            shorthand = _SHORTHANDS.get(".".join(parents[: depth + 1]))
            if shorthand is not None and isinstance(child, bool):
                child = node[key] = {shorthand: child}  # a bare switch, opened up
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
            data, origin = copy_tree(profile), "the given configuration"
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
            hint = did_you_mean(loc[-1], allowed)
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


def _fields_at(loc: Sequence[str]) -> list[str]:
    cls: type[BaseModel] = TrainConfig
    for part in loc:
        annotation = cls.model_fields[part].annotation
        if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
            return []
        cls = annotation
    return sorted(cls.model_fields)
