"""What a training run reports: per epoch, and for the whole run (``stagetune train --json``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from model._pdbbind import Skipped

Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_rmse: float
    val_pearson: float
    seconds: float
    lr: float
    steps: int = 0  # training steps (micro-batches) of the epoch
    step_seconds: float | None = None  # their median time
    complexes_per_step: dict[str, float] | None = None  # mean, min, max
    peak_bytes: int | None = None  # peak memory of its steps; None where not measured


@dataclass
class TrainReport:
    """What a run did; ``to_json`` is what ``stagetune train --json`` prints."""

    epochs: list[EpochMetrics]
    config_hash: str
    device: str
    precision: Precision
    parameters: int
    train_complexes: int
    val_complexes: int
    seconds: float
    run_dir: str | None
    skipped: list[Skipped] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """Plain JSON: a metric that is not a number (a constant prediction's Pearson) is null."""
        data: dict[str, object] = _finite(asdict(self))  # type: ignore[assignment]
        return data


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
