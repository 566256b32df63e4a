"""The job spec: everything one ``stagetune optimize`` run depends on, validated before it runs.

A spec is composed from a preset (``configs/presets/<name>.yaml``: job options and a ``stages``
section merged over ``configs/stages.yaml``) and the options given explicitly (command-line flags,
later a REST body), which win. It is frozen and JSON-serialisable: the job folder keeps it, so a
job that is run again with the same ``job_id`` resumes with exactly the same spec.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model import ConfigError, TrainConfig, default_config_dir, group_choices, load_train_config
from model._config import FileVersion, read_yaml_mapping, recording_reads, unchanged
from tuner._hardware import parse_size
from tuner._stages import Knob, Stage, StagesConfig, load_stages

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class JobSpec(BaseModel):
    """One optimize job. Field docs are what ``--help`` and the REST schema show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(description="names the job's folder; the same id resumes the job")
    preset: str = Field(default="default", description="configs/presets/<name>.yaml")
    stages: tuple[Stage, ...] = Field(default=tuple(Stage), min_length=1)
    data: str = Field(default="synthetic", description="synthetic, or a PDBbind-style root")
    overrides: tuple[str, ...] = Field(
        default=(), description="training config overrides such as optimizer=sgd model.lmax=2"
    )
    space: dict[Stage, dict[str, Knob]] = Field(
        default_factory=dict, description="per stage, knobs that replace the stage's space"
    )
    max_atoms: int | None = Field(default=None, gt=0, description="atoms per probe complex")
    sample: str | None = Field(default=None, description="a real complex ROOT/ID to probe with")
    memory_budget: str | None = Field(default=None, description="CPU budget, e.g. 4GiB")
    fit_trials: int = Field(default=16, gt=0, description="architecture probes per stage")
    tune_trials: int = Field(default=12, gt=0, description="hyperparameter trials per stage")
    max_concurrent: int = Field(default=4, gt=0, description="trials running at once")
    gpus_per_trial: float = Field(default=1.0, ge=0, description="ignored without GPUs")
    cpus_per_trial: float = Field(default=1.0, gt=0)
    accelerator_type: str | None = Field(default=None, description="e.g. A100, H100")
    max_epochs: int = Field(default=10, gt=0, description="ASHA's budget per trial (epochs)")
    grace_period: int = Field(default=1, gt=0, description="epochs before ASHA may stop a trial")
    reduction_factor: float = Field(default=3.0, gt=1, description="ASHA's reduction factor")
    tune: bool = Field(default=True, description="false: the hardware-only answer")
    seed: int = 0
    storage: str = Field(
        default="~/stagetune/jobs", description="folder of job folders, shared by all nodes"
    )

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not _JOB_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a job id: use 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("stages")
    @classmethod
    def _ordered(cls, value: tuple[Stage, ...]) -> tuple[Stage, ...]:
        """Stages run in development order (prototyping's best seeds validation), once each."""
        return tuple(s for s in Stage if s in value)

    @property
    def job_dir(self) -> Path:
        return Path(self.storage).expanduser().resolve() / self.job_id

    def trial_bundle(self, nodes: Sequence[Mapping[str, float]]) -> dict[str, float]:
        """One trial's Ray resources, checked against the nodes' resources (Ray's names: CPU,
        GPU, accelerator_type:T): a request no single node can meet is an error now, not a
        trial pending forever. Without a GPU anywhere, trials take a CPU share."""
        bundle: dict[str, float] = {"CPU": self.cpus_per_trial}
        if self.gpus_per_trial > 0 and any(n.get("GPU", 0.0) > 0 for n in nodes):
            bundle["GPU"] = self.gpus_per_trial
        if self.accelerator_type is not None:
            key = f"accelerator_type:{self.accelerator_type}"
            if not any(key in n for n in nodes):
                known = sorted({k.split(":", 1)[1] for n in nodes for k in n
                                if k.startswith("accelerator_type:")})  # fmt: skip
                raise ConfigError(
                    f"accelerator_type={self.accelerator_type!r}: no node has it; the cluster "
                    f"has {', '.join(known) or 'no typed accelerator'}"
                )
            bundle[key] = 0.001
        if not any(all(n.get(k, 0.0) >= v for k, v in bundle.items()) for n in nodes):
            names = {"CPU": "cpus_per_trial", "GPU": "gpus_per_trial"}
            short = [
                f"{names[k]}={v:g}, but the most {k}s on one node is "
                f"{max((n.get(k, 0.0) for n in nodes), default=0.0):g}"
                for k, v in bundle.items()
                if k in names and all(n.get(k, 0.0) < v for n in nodes)
            ]
            raise ConfigError(
                "no node can run a trial: "
                + ("; ".join(short) or f"no node has all of {bundle} at once")
            )
        return bundle

    def train_config(self, config_dir: Path | None = None) -> TrainConfig:
        """The job's training configuration: configs/ with its overrides, data and crop."""
        settings: dict[str, Any] = {"data.source": self.data}
        if self.max_atoms is not None:
            settings["data.max_atoms"] = self.max_atoms
        return load_train_config(self.overrides, config_dir=config_dir, settings=settings)

    def stages_config(self, config_dir: Path | None = None) -> StagesConfig:
        """configs/stages.yaml, with the preset's stages section and this job's spaces over it."""
        root = config_dir or default_config_dir()
        preset = _read_preset(root, self.preset)
        space = {"stages": {s.value: {"space": k} for s, k in self.space.items()}}
        return load_stages(root / "stages.yaml", [preset.get("stages") or {}, space])


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def presets(config_dir: Path | None = None) -> list[str]:
    root = (config_dir or default_config_dir()) / "presets"
    return sorted(p.stem for p in root.glob("*.yaml"))


def job_choices(config_dir: Path | None = None) -> dict[str, Any]:
    """What a job may name: each preset's job options, and the optimizer and scheduler files."""
    root = config_dir or default_config_dir()
    return {
        "presets": {
            name: dict(_read_preset(root, name).get("job") or {}) for name in presets(root)
        },
        "optimizers": group_choices(root, "optimizer"),
        "schedulers": group_choices(root, "scheduler"),
    }


def check_profile(config: Mapping[str, Any], config_dir: Path | None = None) -> TrainConfig:
    """The whole training configuration that ``config`` (a profile's sections, as a mapping)
    composes to, as ``stagetune train --profile`` composes it; ``ConfigError`` names each key
    that is not accepted (``problems``)."""
    return load_train_config(profile=config, config_dir=config_dir)


def build_job_spec(given: Mapping[str, Any], config_dir: Path | None = None) -> JobSpec:
    """The spec of ``given`` options (``None`` values are not given) over their preset's."""
    options = {k: v for k, v in given.items() if v is not None}
    name = options.get("preset", "default")
    preset = _read_preset(config_dir or default_config_dir(), name)
    job = dict(preset.get("job") or {})
    job.update(options)
    job.setdefault("job_id", new_job_id())
    try:
        spec = JobSpec.model_validate(job)
    except ValidationError as exc:
        raise ConfigError("invalid job:\n  " + "\n  ".join(_explain(exc))) from None
    _check_configs(spec, config_dir)
    return spec


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
        spec.stages_config(config_dir)
        spec.train_config(config_dir)
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


def _explain(exc: ValidationError) -> list[str]:
    lines = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = f"unknown option; accepted: {', '.join(sorted(JobSpec.model_fields))}"
        elif e["type"] == "enum":
            message += f" (got {e['input']!r})"
        lines.append(f"{where}: {message}")
    return lines
