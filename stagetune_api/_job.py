"""The job spec: everything one ``stagetune optimize`` run depends on.

``JobSpec`` is the resolved spec, every field set: the job folder keeps it as ``job.json``, so a
job run again with the same ``job_id`` resumes with exactly the same spec. ``JobOptions`` is what
a client may give (the body of ``POST /optimize``, a ``--spec`` file, the command line's flags):
the same fields, each optional (a field not given takes the preset's value, else the spec's
default), less the two the server sets (``job_id`` and ``storage``). It is derived from
``JobSpec``, so a field, its bounds and its description are written once.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from stagetune_api._enums import Stage
from stagetune_api._overrides import override_problems
from stagetune_api._sizes import SIZE_PATTERN, parse_size
from stagetune_api._text import Integer, Key, KeyedProblems, Number, Text, check_values

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PRESET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # a file name of configs/presets/, no path
MIN_MEMORY_BUDGET = 2**20  # a trial's budget below 1 MiB cannot hold a model and a batch
_TEXT = 4096  # the longest string option (a path, an override)
_MANY = 10_000  # the most trials, epochs or concurrent trials a job may ask for


#: The ``JobSpec`` fields a sweep (``stagetune train -m``) takes: how each trial runs, as
#: ``stagetune optimize`` has them.
SWEEP_FIELDS = (
    "cpus_per_trial",
    "gpus_per_trial",
    "accelerator_type",
    "max_concurrent",
    "grace_period",
    "reduction_factor",
)


def new_job_id() -> str:
    """When it was asked for, and six random hex digits: ``20261130-045236-1f2e3d``."""
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class Range(BaseModel):
    """A knob's choices from ``min`` to ``max`` every ``step``. That ``min`` is not above
    ``max`` is checked by the space that holds the range (``JobSpec``, a stage of
    configs/stages.yaml), with ``problem``: a rule between two fields is beyond what JSON Schema
    states, and the body of a request (``JobOptions``) is refused for what its schema states
    only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: int = Field(gt=0, le=1_000_000)
    max: int = Field(gt=0, le=1_000_000)
    step: int = Field(default=1, gt=0, le=1_000_000)

    def problem(self) -> str | None:
        """Why the range is refused, or None."""
        return f"min={self.min} is above max={self.max}" if self.min > self.max else None

    def values(self) -> list[int]:
        return list(range(self.min, self.max + 1, self.step))


Knob = list[Integer] | list[Number] | Range


class JobSpec(BaseModel):
    """One optimize job. Field docs are what ``--help`` and the REST schema show."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    job_id: str = Field(
        max_length=64,
        json_schema_extra={"pattern": JOB_ID_PATTERN},
        description="names the job's folder; the same id resumes the job",
    )
    preset: str = Field(
        default="default",
        max_length=64,
        pattern=PRESET_PATTERN,
        description="a preset of configs/presets/, by name",
    )
    stages: tuple[Stage, ...] = Field(
        default=tuple(Stage), min_length=1, max_length=3, description="the stages to answer"
    )
    data: Text = Field(
        default="synthetic",
        min_length=1,
        max_length=_TEXT,
        description="synthetic, or a PDBbind-style root every node can read",
    )
    overrides: tuple[Annotated[Text, Field(max_length=_TEXT)], ...] = Field(
        default=(),
        max_length=1000,
        description="training config overrides such as optimizer=sgd model.lmax=2",
    )
    space: dict[Stage, dict[Key, Knob]] = Field(
        default_factory=dict, description="per stage, knobs that replace the stage's space"
    )
    max_atoms: int | None = Field(
        default=None, gt=0, le=100_000, description="atoms per probe complex (data.max_atoms)"
    )
    sample: Text | None = Field(
        default=None, max_length=_TEXT, description="a real complex ROOT/ID to probe with"
    )
    memory_budget: str | None = Field(
        default=None,
        max_length=32,
        pattern=SIZE_PATTERN,
        description="CPU budget per trial, at least 1MiB, e.g. 4GiB",
    )
    fit_trials: int = Field(default=16, gt=0, le=_MANY, description="architecture probes per stage")
    tune_trials: int = Field(
        default=12, gt=0, le=_MANY, description="hyperparameter trials per stage"
    )
    max_concurrent: int = Field(default=4, gt=0, le=1024, description="trials running at once")
    gpus_per_trial: float = Field(
        default=1.0, ge=0, le=64, description="GPUs per trial; ignored where no node has one"
    )
    cpus_per_trial: float = Field(default=1.0, gt=0, le=1024, description="CPUs per trial")
    accelerator_type: Text | None = Field(
        default=None, max_length=64, description="only nodes with this GPU type, e.g. A100, H100"
    )
    max_epochs: int = Field(
        default=10, gt=0, le=_MANY, description="ASHA's budget per trial (epochs)"
    )
    grace_period: int = Field(
        default=1, gt=0, le=_MANY, description="epochs before ASHA may stop a trial"
    )
    reduction_factor: float = Field(
        default=3.0, gt=1, le=100, description="ASHA's reduction factor"
    )
    tune: bool = Field(
        default=True, description="run the tune search; false gives the hardware-only answer"
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="the searchers' seed")
    storage: Text = Field(
        default="~/stagetune/jobs",
        max_length=_TEXT,
        description="folder of job folders, shared by all nodes",
    )

    @model_validator(mode="before")
    @classmethod
    def _values(cls, data: Any) -> Any:
        check_values(data)
        if isinstance(data, dict):  # each override's value, before anything parses it whole
            problems = override_problems(data.get("overrides"))
            if problems:
                raise KeyedProblems(problems)
        return data

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not re.fullmatch(JOB_ID_PATTERN, value):
            raise ValueError(
                f"{value!r} is not a job id: use 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return _written_as_size(value)

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None and parse_size(value) < MIN_MEMORY_BUDGET:
            raise ValueError(f"{value!r} is below the least memory budget a trial can use, 1MiB")
        return value

    @field_validator("stages")
    @classmethod
    def _ordered(cls, value: tuple[Stage, ...]) -> tuple[Stage, ...]:
        """Stages run in development order (prototyping's best seeds validation), once each."""
        return tuple(s for s in Stage if s in value)

    @field_validator("space")
    @classmethod
    def _choices(cls, value: dict[Stage, dict[str, Knob]]) -> dict[Stage, dict[str, Knob]]:
        problems = []
        for stage, knobs in value.items():
            for knob, choices in knobs.items():
                if isinstance(choices, list) and not all(math.isfinite(c) for c in choices):
                    why: str | None = "every choice must be a finite number"
                else:
                    why = choices.problem() if isinstance(choices, Range) else None
                if why is not None:
                    problems.append((f"{stage.value}.{knob}", why))
        if problems:
            raise KeyedProblems(problems)
        return value

    @property
    def job_dir(self) -> Path:
        return Path(self.storage).expanduser().resolve() / self.job_id


def _written_as_size(value: Any) -> Any:
    """``value``, if it is not text or is a size as ``SIZE_PATTERN`` has it: the pattern's own
    refusal, in words."""
    if isinstance(value, str) and not re.fullmatch(SIZE_PATTERN, value):
        raise ValueError(
            f"{value!r} is not a memory size: a number with an optional unit, B, KB, MB, GB, TB, "
            "KiB, MiB, GiB or TiB (e.g. 4GiB)"
        )
    return value


#: Set by whoever runs the job (the service, or the command line's --job-id and --storage).
SERVER_FIELDS = ("job_id", "storage")


def _optional(name: str) -> tuple[Any, Any]:
    info = JobSpec.model_fields[name]
    inner = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    annotation = Optional[inner]  # type: ignore[valid-type]  # noqa: UP045
    default = info.get_default(call_default_factory=True)
    shown = [getattr(v, "value", v) for v in default] if isinstance(default, tuple) else default
    described = f"{info.description} (default: the preset's, else {json.dumps(shown)})"
    return annotation, Field(default=None, description=described)


_Options: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_Options",
    __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False),
    __validators__={
        "size": field_validator("memory_budget", mode="before")(
            lambda cls, value: _written_as_size(value)
        ),
        "values": model_validator(mode="before")(lambda cls, data: check_values(data)),
    },
    **{name: _optional(name) for name in JobSpec.model_fields if name not in SERVER_FIELDS},
)


class JobOptions(_Options):  # type: ignore[misc,valid-type]
    """The options of one job (the body of ``POST /optimize``), each optional: one not given
    takes the preset's value, else ``JobSpec``'s default.

    It refuses what its JSON Schema states and nothing more (each field's type, bounds and
    pattern; its text and keys as ``stagetune_api._text`` has them), so that the OpenAPI
    document says exactly which bodies are well formed. What a schema cannot state is checked
    where the options become a ``JobSpec``, and refused there as a 422 naming the field all the
    same: a memory budget under 1MiB, a range whose min is above its max, an override's value,
    a preset that does not exist."""

    def given(self) -> dict[str, Any]:
        """The options given, as JSON data (what ``tuner.build_job_spec`` takes)."""
        return self.model_dump(mode="json", exclude_unset=True)


def read_job_options(path: Path) -> dict[str, Any]:
    """The JSON object of job options in ``path`` (a ``--spec`` file; the service writes one per
    job: ``spec.json``). ``ValueError`` says what is wrong with it, naming the file."""
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--spec {path}: {exc}") from None
    if not isinstance(stored, dict):
        kind = type(stored).__name__
        raise ValueError(f"--spec {path}: must hold a JSON object of job options, not {kind}")
    return stored
