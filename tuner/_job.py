"""Building a job's spec (``stagetune_api.JobSpec``) and what it composes to; the one place a
job is validated, for the command line, ``--spec`` files and the REST service alike.

A spec is composed from a preset (``configs/presets/<name>.yaml``: job options and a ``stages``
section merged over ``configs/stages.yaml``) and the options given explicitly (command-line flags,
a ``--spec`` file, a REST body), which win; then every configuration it names is composed once,
so a bad space or override is an error before the job starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model import (
    ConfigError,
    FileVersion,
    TrainConfig,
    default_config_dir,
    fixed_choices,
    group_choices,
    load_train_config,
    read_yaml_mapping,
    recording_reads,
    unchanged,
)
from stagetune_api import JobSpec, KeyedProblems, new_job_id, preset_names, read_job_options
from tuner._stages import StagesConfig, load_stages

log = logging.getLogger(__name__)


def train_config(spec: JobSpec, config_dir: Path | None = None) -> TrainConfig:
    """The job's training configuration: configs/ with its overrides, data and crop."""
    settings: dict[str, Any] = {"data.source": spec.data}
    if spec.max_atoms is not None:
        settings["data.max_atoms"] = spec.max_atoms
    return load_train_config(spec.overrides, config_dir=config_dir, settings=settings)


def stages_config(spec: JobSpec, config_dir: Path | None = None) -> StagesConfig:
    """configs/stages.yaml, with the preset's stages section and the job's spaces over it."""
    root = config_dir or default_config_dir()
    preset = _read_preset(root, spec.preset)
    space = {"stages": {s.value: {"space": k} for s, k in spec.space.items()}}
    return load_stages(root / "stages.yaml", [preset.get("stages") or {}, space])


def trial_bundle(spec: JobSpec, nodes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One trial's Ray resources, checked against the nodes' resources (Ray's names: CPU, GPU,
    accelerator_type:T): a request no single node can meet is an error now, not a trial pending
    forever. Without a GPU anywhere, trials take a CPU share."""
    bundle: dict[str, float] = {"CPU": spec.cpus_per_trial}
    if spec.gpus_per_trial > 0 and any(n.get("GPU", 0.0) > 0 for n in nodes):
        bundle["GPU"] = spec.gpus_per_trial
    if spec.accelerator_type is not None:
        key = f"accelerator_type:{spec.accelerator_type}"
        if not any(key in n for n in nodes):
            known = sorted(
                {k.split(":", 1)[1] for n in nodes for k in n if k.startswith("accelerator_type:")}
            )
            has = f"the cluster has {', '.join(known) or 'no typed accelerator'}"
            raise ConfigError(
                f"accelerator_type={spec.accelerator_type!r}: no node has it; {has}",
                [("accelerator_type", f"no node has {spec.accelerator_type!r}; {has}")],
            )
        bundle[key] = 0.001
    if not any(all(n.get(k, 0.0) >= v for k, v in bundle.items()) for n in nodes):
        names = {"CPU": "cpus_per_trial", "GPU": "gpus_per_trial"}
        short = [
            (
                names[k],
                f"{names[k]}={v:g}, but the most {k}s on one node is "
                f"{max((n.get(k, 0.0) for n in nodes), default=0.0):g}",
            )
            for k, v in bundle.items()
            if k in names and all(n.get(k, 0.0) < v for n in nodes)
        ]
        why = "; ".join(text for _, text in short) or f"no node has all of {bundle} at once"
        problems = [(key, f"no node can run a trial: {text}") for key, text in short]
        raise ConfigError(f"no node can run a trial: {why}", problems)
    return bundle


def presets(config_dir: Path | None = None) -> list[str]:
    return preset_names(config_dir)


def job_choices(config_dir: Path | None = None) -> dict[str, Any]:
    """What a job may name: each preset's job options, and the optimizer and scheduler files."""
    root = config_dir or default_config_dir()
    return {
        "presets": {
            name: dict(_read_preset(root, name).get("job") or {}) for name in presets(root)
        },
        "optimizers": group_choices(root, "optimizer"),
        "schedulers": group_choices(root, "scheduler"),
        "config": fixed_choices(),
    }


def check_profile(config: Mapping[str, Any], config_dir: Path | None = None) -> TrainConfig:
    """The whole training configuration that ``config`` (a profile's sections, as a mapping)
    composes to, as ``stagetune train --profile`` composes it; ``ConfigError`` names each key
    that is not accepted (``problems``)."""
    return load_train_config(profile=config, config_dir=config_dir)


def build_job_spec(
    given: Mapping[str, Any],
    config_dir: Path | None = None,
    spec_file: Path | None = None,
) -> JobSpec:
    """The spec of ``given`` options (``None`` values are not given) over those of
    ``spec_file`` (a JSON file of options, as ``--spec`` reads it), over their preset's; every
    field and every configuration it names checked (``ConfigError`` names each problem)."""
    options = read_spec_file(spec_file) if spec_file is not None else {}
    options.update({k: v for k, v in given.items() if v is not None})
    name = options.get("preset", "default")
    preset = _read_preset(config_dir or default_config_dir(), name)
    job = dict(preset.get("job") or {})
    job.update(options)
    job.setdefault("job_id", new_job_id())
    try:
        spec = JobSpec.model_validate(job)
    except ValidationError as exc:
        raise invalid_spec(exc) from None
    _check_configs(spec, config_dir)
    return spec


def read_spec_file(path: Path) -> dict[str, Any]:
    """A JSON object of job options (the service writes one per job: ``spec.json``)."""
    try:
        return read_job_options(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_resume(path: Path, spec: JobSpec) -> None:
    """A job id names one job: running it again (``path``: its ``job.json``) must ask for the
    same job, and resumes it."""
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


_checked: dict[str, tuple[FileVersion, ...]] = {}


def _check_configs(spec: JobSpec, config_dir: Path | None) -> None:
    """A bad space or override is an error now, not in the middle of the job. A check that
    passed is not composed again while the files it read are unchanged: the service checks a job
    per request, and most requests differ in budgets, not in configs."""
    key = f"{config_dir}|" + spec.model_dump_json(
        include={"preset", "space", "overrides", "data", "max_atoms"}
    )
    versions = _checked.get(key)
    if versions is not None and unchanged(versions):
        return
    with recording_reads() as reads:
        stages_config(spec, config_dir)
        train_config(spec, config_dir)
    if len(_checked) >= 256:
        _checked.clear()
    _checked[key] = tuple(reads)


def _read_preset(root: Path, name: str) -> dict[str, Any]:
    path = root / "presets" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"preset {name!r}: no {path}; choose from {', '.join(presets(root))}")
    data = read_yaml_mapping(path)
    unknown = sorted(set(data) - {"job", "stages"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; accepted: job, stages")
    return data


def invalid_spec(exc: ValidationError, what: str = "job") -> ConfigError:
    """A ``JobSpec``'s validation error as a ``ConfigError``: a problem per key (a check of
    several values, ``KeyedProblems``, names each of its keys), a line each."""
    problems: list[tuple[str, str]] = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        found = (e.get("ctx") or {}).get("error")
        if isinstance(found, KeyedProblems):
            prefix = f"{where}." if where else ""
            problems += [(prefix + key, why) for key, why in found.problems]
            continue
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = f"unknown option; accepted: {', '.join(sorted(JobSpec.model_fields))}"
        elif e["type"] == "enum":
            message += f" (got {e['input']!r})"
        problems.append((where or "(request)", message))
    lines = [f"{key}: {why}" if key != "(request)" else why for key, why in problems]
    return ConfigError(f"invalid {what}:\n  " + "\n  ".join(lines), problems)
