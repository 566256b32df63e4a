"""The records that cross process and package boundaries: the REST body and ``--spec`` file of a
job (``JobOptions``, ``JobSpec``), ``result.json`` (``JobResult``), ``progress.json``
(``Progress``), a trial's report and its record, the rows of ``trials.csv`` (``TrialRecord``,
with the probe's ``ProbeResult``), a training run's report, and the enums they use.

Typed records and enums only: importing this package imports neither torch nor Ray, so the
REST service, the command line and the results page share one typed contract with the tuner.
Dependencies point one way: ``service`` and ``tuner`` import this package; it imports neither.
"""

from stagetune_api._columns import TRIAL_COLUMNS
from stagetune_api._configs import default_config_dir, preset_names
from stagetune_api._enums import JobKind, Search, Stage, TrialStatus
from stagetune_api._figures import Shown, TrialColumn, columns_of, variables_of
from stagetune_api._files import write_atomic
from stagetune_api._folder import JobFiles, RunFiles, SweepFiles
from stagetune_api._job import (
    JOB_ID_PATTERN,
    SWEEP_FIELDS,
    JobOptions,
    JobSpec,
    Knob,
    Range,
    new_job_id,
    read_job_options,
)
from stagetune_api._json import finite_json
from stagetune_api._overrides import override_problem, override_value
from stagetune_api._probe import (
    NOISY_SPREAD,
    DataFigures,
    Measurement,
    ProbeResult,
    TimeModel,
    footprint,
)
from stagetune_api._progress import Best, Progress, SearchFigures
from stagetune_api._reports import (
    SCORE,
    VALIDATION_FIGURES,
    EpochReport,
    FitReport,
    TrainedReport,
    Where,
)
from stagetune_api._result import (
    Batching,
    JobResult,
    MeasuredOn,
    ProbeFigures,
    Provenance,
    StageBudget,
    StageResult,
    TrialRecord,
    ValidationFigures,
    Verdict,
    Workers,
    result_schema,
)
from stagetune_api._sizes import format_size, limit_words, parse_size
from stagetune_api._text import (
    JsonValue,
    Key,
    KeyedProblems,
    Text,
    check_values,
    printable_json,
)
from stagetune_api._train import EpochFigures, SkippedComplex, TrainOptions, TrainRunReport

__all__ = [
    "Workers",
    "JOB_ID_PATTERN",
    "NOISY_SPREAD",
    "SWEEP_FIELDS",
    "SCORE",
    "Batching",
    "DataFigures",
    "Best",
    "EpochFigures",
    "EpochReport",
    "FitReport",
    "JobFiles",
    "JobKind",
    "JobOptions",
    "JobResult",
    "JobSpec",
    "JsonValue",
    "Key",
    "KeyedProblems",
    "Knob",
    "MeasuredOn",
    "Measurement",
    "ProbeFigures",
    "ProbeResult",
    "Progress",
    "Provenance",
    "Range",
    "RunFiles",
    "Search",
    "SearchFigures",
    "Shown",
    "SkippedComplex",
    "Stage",
    "SweepFiles",
    "StageBudget",
    "StageResult",
    "Text",
    "TimeModel",
    "TrainOptions",
    "TrainRunReport",
    "TrainedReport",
    "TRIAL_COLUMNS",
    "TrialColumn",
    "VALIDATION_FIGURES",
    "TrialRecord",
    "TrialStatus",
    "ValidationFigures",
    "Verdict",
    "Where",
    "check_values",
    "columns_of",
    "default_config_dir",
    "finite_json",
    "footprint",
    "format_size",
    "limit_words",
    "new_job_id",
    "override_problem",
    "override_value",
    "parse_size",
    "preset_names",
    "printable_json",
    "read_job_options",
    "result_schema",
    "variables_of",
    "write_atomic",
]
