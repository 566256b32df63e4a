"""``progress.json``: a running job's searches, as the service and the results page read them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stagetune_api._enums import Search, Stage


class Best(BaseModel):
    """The best trial of a search so far: its configuration and the figure it won on."""

    model_config = ConfigDict(extra="ignore")

    config: dict[str, Any] = Field(
        description="what the trial chose: a fit trial's knobs, a tune trial's hyperparameters "
        "(with its pair), a sweep run's swept values"
    )
    metric: str = Field(description="the figure compared: score (fit) or val_loss")
    value: float
    unit: str = Field(description="the figure's unit, as the page shows it")
    goal: Literal["max", "min"] = Field(description="whether larger or smaller is better")


class SearchFigures(BaseModel):
    """One search of one stage, so far."""

    model_config = ConfigDict(extra="ignore")

    total: int | None = Field(default=None, description="trials the search runs at most")
    done: int = Field(default=0, description="trials finished")
    running: int = 0
    pending: int = 0
    errored: int = 0
    pruned: int = Field(default=0, description="configurations answered without a probe")
    stopped_early: int = Field(default=0, description="trials ASHA stopped early")
    best: Best | str | None = Field(
        default=None,
        description="the best trial so far (in words, as a string, in a job of an earlier version)",
    )
    retries: dict[str, int] = Field(
        default_factory=dict, description="restarts after a failure, per trial"
    )


class Progress(BaseModel):
    """Every search started so far, by stage; a stage not started yet is absent."""

    model_config = ConfigDict(extra="ignore")

    stages: dict[Stage, dict[Search, SearchFigures]] = Field(default_factory=dict)
    elapsed_seconds: float | None = Field(default=None, description="since the job started")
