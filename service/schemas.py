"""Every schema of the REST API in one place: what the routes take and answer. The records they
carry (job options, result.json, progress, a training run's report) are the contract's
(``stagetune_api``); these wrap them for the service.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.store import JobState
from stagetune_api import (
    TRIAL_COLUMNS,
    JobKind,
    JobOptions,
    JsonValue,
    Key,
    Search,
    SearchFigures,
    Stage,
    Text,
    TrainOptions,
    TrialColumn,
    check_values,
)

# --- jobs -----------------------------------------------------------------------------------


class JobPublic(BaseModel):
    job_id: str
    kind: JobKind = Field(description="optimize, or train: a training run of a saved profile")
    state: JobState
    options: JobOptions | TrainOptions = Field(description="what the job was asked with")
    created: float
    started: float | None
    finished: float | None
    elapsed_seconds: float | None
    error: str | None
    progress: dict[Stage, dict[Search, SearchFigures]] = Field(
        description="each search started so far (progress.json); a stage not started is absent"
    )
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobPublic]
    total: int


# --- refusals ---------------------------------------------------------------------------------


class Problem(BaseModel):
    key: str = Field(description="the dotted key of the request or configuration, e.g. fit_trials")
    message: str


class Refusal(BaseModel):
    detail: str = Field(description="why, in one sentence")


class Health(BaseModel):
    status: str = Field(
        description="ok; unavailable while Ray does not answer; degraded while the job index or "
        "the state folder cannot be used (the service repairs it by itself)"
    )
    ray: str = Field(description="ok, or why Ray does not answer")
    since: float | None = Field(default=None, description="when Ray stopped answering")
    store: str = Field(default="ok", description="ok, or why the job index cannot be used")
    store_since: float | None = Field(default=None, description="since when it cannot")
    token: bool = Field(
        default=False,
        description="whether every other route needs a bearer token (the results page asks for "
        "it before its first request)",
    )


class Invalid(BaseModel):
    detail: str = Field(description="every problem, one per line")
    problems: list[Problem]


# --- profiles ---------------------------------------------------------------------------------

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[Key, JsonValue] = Field(
        description="sections of a training configuration (model, optimizer, scheduler, data, "
        "train), e.g. a job's profiles/<stage>.yaml as JSON; missing keys come from configs/; "
        "no control character in its text but tab and newline, no key that is empty or more "
        "than one line, no lone surrogate, and every number within +-(2**53 - 1)"
    )

    @model_validator(mode="before")
    @classmethod
    def _values(cls, data: Any) -> Any:
        return check_values(data)


class ConfigChecked(BaseModel):
    valid: bool
    config_hash: str = Field(description="SHA-256 of the whole configuration")
    config: dict[str, Any] = Field(description="the whole configuration, every key typed")


class ProfileIn(ConfigIn):
    stage: Stage | None = Field(default=None, description="the stage it was chosen for")
    job_id: Text | None = Field(default=None, description="the job it came from", max_length=64)
    description: Text | None = Field(default=None, max_length=500)


class ProfilePublic(BaseModel):
    name: str
    version: int
    versions: int = Field(description="versions saved under this name")
    created: float
    stage: Stage | None
    job_id: str | None
    description: str | None
    config_hash: str
    config: dict[str, Any]
    links: dict[str, str]
    command: str = Field(description="download this version and train with it")


class ProfileList(BaseModel):
    profiles: list[ProfilePublic]


class Choices(BaseModel):
    presets: dict[str, dict[str, Any]] = Field(description="each preset's job options")
    stages: list[Stage]
    data_roots: list[str] = Field(description="folders a job's data may lie in")
    optimizers: list[str]
    schedulers: list[str]
    config_choices: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="each configuration key whose values are a fixed set, with the set (null "
        "where the key may be null): what the profile editor offers as a choice",
    )
    trial_columns: dict[Search, list[TrialColumn]] = Field(
        default_factory=lambda: {s: list(c) for s, c in TRIAL_COLUMNS.items()},
        description="each search's measured columns of its trials: the variable, heading and kind",
    )
