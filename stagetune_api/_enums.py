"""The names that cross boundaries as strings on the wire and as enums in code."""

from __future__ import annotations

from enum import Enum


class Stage(str, Enum):
    """A development stage, in the order a job runs them (prototyping's best seeds validation)."""

    PROTOTYPING = "prototyping"
    VALIDATION = "validation"
    PRODUCTION = "production"


class JobKind(str, Enum):
    """What a job of the service runs: a search (``stagetune optimize``) or a training run of a
    saved profile (``stagetune train --profile``)."""

    OPTIMIZE = "optimize"
    TRAIN = "train"


class Search(str, Enum):
    """The two searches of a stage: probes of architectures, then training of hyperparameters."""

    FIT = "fit"
    TUNE = "tune"


class TrialStatus(str, Enum):
    """How a trial ended. Fit search: probed, pruned (answered without a probe), invalid (not a
    model), error. Tune search: completed, stopped_early (by ASHA), error."""

    PROBED = "probed"
    PRUNED = "pruned"
    INVALID = "invalid"
    ERROR = "error"
    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
