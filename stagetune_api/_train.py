"""A training run of a saved profile (a job of kind ``train``): what starts it, what it reports."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stagetune_api._json import finite_json


class TrainOptions(BaseModel):
    """The saved profile a training run trains with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(description="the saved profile's name")
    version: int = Field(ge=1, description="its version")


class EpochFigures(BaseModel):
    """One epoch; a figure that is not a finite number (a diverged loss) is null."""

    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_rmse: float | None
    val_pearson: float | None
    val_loss_se: float | None = Field(
        default=None, description="the standard error of val_loss over the validation complexes"
    )
    val_baseline_loss: float | None = Field(
        default=None,
        description="the validation loss of predicting the training labels' mean: the figure a "
        "model must beat to have learned anything",
    )
    val_gain_se: float | None = Field(
        default=None,
        description="the standard error of the model's gain over the baseline, complex by "
        "complex; a gain within about two of these is not one",
    )
    val_complexes: int | None = Field(default=None, description="the validation complexes")
    seconds: float
    lr: float | None
    steps: int = Field(default=0, description="training steps (micro-batches) of the epoch")
    step_seconds: float | None = Field(default=None, description="their median time")
    complexes_per_step: dict[str, float] | None = Field(
        default=None, description="complexes per step: mean, min and max"
    )
    peak_bytes: int | None = Field(
        default=None, description="peak memory of the epoch's steps; null where not measured"
    )
    atom_imbalance: float | None = Field(
        default=None,
        description="of several workers: the mean over the epoch's steps of (most - fewest) / "
        "mean atoms of the step's batches across the ranks (complexes, for a fixed batch size); "
        "null for one",
    )


class SkippedComplex(BaseModel):
    complex_id: str
    path: str
    reason: str


class TrainRunReport(BaseModel):
    """``stagetune train --json``: what a run did (``report.json`` of a training job)."""

    model_config = ConfigDict(extra="allow")

    epochs: list[EpochFigures]
    config_hash: str = Field(description="SHA-256 of the run's whole configuration")
    device: str
    precision: str = Field(description="fp32, bf16 or fp16")
    parameters: int = Field(description="trainable parameters")
    train_complexes: int
    val_complexes: int
    seconds: float
    run_dir: str | None = Field(description="the run's folder (config.json, audit entry)")
    skipped: list[SkippedComplex] = Field(default_factory=list, description="complexes left out")
    step_seconds: float | None = Field(
        default=None,
        description="the median time of the run's timed training steps, every epoch's (with "
        "--measure-memory on a CPU, the steps not profiled); null where none was timed or in "
        "reports written before it was kept",
    )
    timed_steps: int = Field(default=0, description="the steps step_seconds is the median of")
    peak_bytes: int | None = Field(
        default=None, description="the peak memory of the run's steps; null where not measured"
    )
    workers: int = Field(
        default=1, description="data-parallel processes that trained it, one device each"
    )
    atom_imbalance: float | None = Field(
        default=None,
        description="of several workers: the mean over every step of the run of (most - "
        "fewest) / mean atoms of the step's batches across the ranks; null for one",
    )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: a figure that is not a finite number (a diverged loss, the Pearson of a
        constant prediction) is null."""
        return dict(finite_json(self.model_dump(mode="json")))
