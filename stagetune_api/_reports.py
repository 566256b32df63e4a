"""What a trial reports to Ray Tune, typed once for the worker that writes it and the driver that
reads it: a fit trial's one report (``FitReport``: its probe and where it ran) and a training
trial's report of each epoch (``EpochReport``: validation figures, for ASHA and the records).

Tune's metrics are flat: a ``FitReport`` travels as one JSON string (``fit_report``, the
record's own dump) beside the score its searcher maximises; an ``EpochReport`` as its fields,
which ASHA reads by name. The driver reads both back with ``of_metrics``, which also reads what
a trial of an earlier version reported (a search resumed from its experiment).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
)

from stagetune_api._figures import Shown
from stagetune_api._probe import ProbeResult

#: The fit search's metric, maximised: the stage's policy's score of a probed model.
SCORE = "score"
_FIT_REPORT = "fit_report"


class Where(BaseModel):
    """The node a trial ran on and when it started."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    node_id: str | None = Field(default=None, description="the Ray node; None outside Ray")
    started: float = Field(default=0.0, description="epoch seconds")


def _probe_of(value: Any) -> ProbeResult | None:
    if value is None or isinstance(value, ProbeResult):
        return value
    return ProbeResult.from_json(value)


def _probe_json(value: ProbeResult | None) -> dict[str, Any] | None:
    return None if value is None else value.to_json()


#: A probe's result in a report: itself in Python, ``ProbeResult.to_json`` in JSON.
ProbeField = Annotated[
    ProbeResult | None,
    PlainValidator(_probe_of, json_schema_input_type=dict[str, Any] | None),
    PlainSerializer(_probe_json, return_type=dict[str, Any] | None),
]


class FitReport(Where):
    """A fit trial's report: one probe of one model. Its figures are recorded as ``probe.*``
    variables: the probe's, and whether the policy may choose the model."""

    RECORDED: ClassVar[dict[str, str]] = {
        "probe": "probe",
        "feasible": "probe.feasible",
        "config_hash": "probe.config_hash",
    }

    score: float = Field(description="the stage's policy's score; 0 when it does not fit")
    fits: bool = Field(description="whether the model fits at the stage's least batch")
    feasible: Annotated[bool, Shown("feasible", "yes/no", 9)] = Field(
        description="whether the policy may choose it (score above 0)"
    )
    invalid: str | None = Field(
        default=None, description="why the configuration is not a valid model; None when it is"
    )
    config_hash: str | None = Field(default=None, description="SHA-256 of its configuration")
    probe: ProbeField = Field(default=None, description="the probe's result; None if none")
    device: str | None = Field(default=None, description="cpu or cuda:N, as the trial saw it")
    device_model: str | None = None

    def metrics(self) -> dict[str, Any]:
        """What the trial hands to ``tune.report``."""
        return {SCORE: self.score, _FIT_REPORT: self.model_dump_json()}

    @classmethod
    def of_metrics(cls, metrics: Mapping[str, Any] | None) -> FitReport | None:
        """The report in a trial's last metrics; None when it reported none (it crashed)."""
        metrics = metrics or {}
        text = metrics.get(_FIT_REPORT)
        if text:
            return cls.model_validate_json(text)
        if SCORE not in metrics:
            return None
        # reported field by field, with the probe as a JSON string, by an earlier version
        probe = metrics.get("probe")
        return cls.model_validate({**metrics, "probe": json.loads(probe) if probe else None})


#: An epoch report's figures of the validation complexes (``result.*`` in the records).
VALIDATION_FIGURES = (
    "val_loss",
    "val_rmse",
    "val_pearson",
    "train_loss",
    "config_hash",
    "val_loss_se",
    "val_baseline_loss",
    "val_gain_se",
    "val_complexes",
)


class EpochReport(Where):
    """A training trial's report at the end of an epoch, its figures as the epoch measured them
    (a diverged loss is NaN, which ASHA ranks last); ``val_pearson`` is None where it is not a
    number (the Pearson of a constant prediction)."""

    RECORDED: ClassVar[dict[str, str]] = {
        "epoch": "train.epochs_run",
        **{name: f"result.{name}" for name in VALIDATION_FIGURES},
    }

    epoch: Annotated[int, Shown("epochs run", "count", 1)]
    val_loss: Annotated[float, Shown("validation loss (MSE)", "loss", 2)]
    val_rmse: Annotated[float | None, Shown("validation RMSE", "figure", 3)] = None
    val_pearson: Annotated[float | None, Shown("Pearson r", "figure", 4)] = None
    train_loss: float | None = None
    config_hash: str | None = Field(default=None, description="SHA-256 of its configuration")
    val_loss_se: float | None = Field(
        default=None, description="the standard error of val_loss over the validation complexes"
    )
    val_baseline_loss: float | None = Field(
        default=None, description="the validation loss of predicting the training labels' mean"
    )
    val_gain_se: float | None = Field(
        default=None, description="the standard error of the gain over that baseline (paired)"
    )
    val_complexes: int | None = Field(default=None, description="the validation complexes")

    @field_validator("val_loss", mode="before")
    @classmethod
    def _diverged(cls, value: Any) -> Any:
        """A diverged loss saved as JSON (null, by ``finite_json``) reads as NaN."""
        return math.nan if value is None else value

    def metrics(self) -> dict[str, Any]:
        """What the trial hands to ``tune.report``: the fields by name."""
        return self.model_dump()

    @classmethod
    def of_metrics(cls, metrics: Mapping[str, Any] | None) -> EpochReport | None:
        """The last epoch's report in a trial's metrics; None before its first epoch."""
        metrics = metrics or {}
        if "val_loss" not in metrics:
            return None
        return cls.model_validate({"epoch": metrics.get("training_iteration", 0), **metrics})


class TrainedReport(BaseModel):
    """A training trial's figures as the job records them: its last epoch's report (``result.*``
    and ``train.epochs_run``; none before its first epoch) and its validation loss each epoch
    (None where it was not a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    RECORDED: ClassVar[dict[str, str]] = {
        "last": "",
        "val_loss_by_epoch": "result.val_loss_by_epoch",
    }

    last: EpochReport | None = None
    val_loss_by_epoch: list[float | None] = Field(default_factory=list)
