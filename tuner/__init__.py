"""Hardware discovery, the memory and time probe, stage policies, the Ray Tune searches and
sweeps (``stagetune train -m``).

The probe needs torch and the model only: it runs on any machine, Ray or not. The searches and
``optimize`` import Ray; they are loaded on first use, so ``from tuner import Probe`` works on a
machine without Ray.
"""

from typing import TYPE_CHECKING

from model import ConfigError
from stagetune_api import DataFigures, JobResult, JobSpec, Stage, result_schema
from tuner._data import JobData
from tuner._folder import JobFolder, profile_yaml, write_json
from tuner._hardware import Device, Hardware, device_for, discover, format_size, parse_size
from tuner._job import (
    build_job_spec,
    check_profile,
    job_choices,
    presets,
    stages_config,
    train_config,
    trial_bundle,
)
from tuner._local import choose, probe_space
from tuner._measures import is_out_of_memory
from tuner._on_data import on_data
from tuner._probe import Measurement, Probe, ProbeResult, ProbeSample, TimeModel
from tuner._pruning import DominancePruner, dominates
from tuner._results import read_trials_csv
from tuner._stages import StagesConfig, StageSpec, load_stages
from tuner.policies import (
    POLICIES,
    Candidate,
    DataStats,
    Policy,
    PolicyContext,
    StageChoice,
    policy_for,
)

if TYPE_CHECKING:
    from tuner._distributed import WorkerFailed, train_on_workers
    from tuner._fit import FitOutcome, fit_searcher
    from tuner._optimize import optimize
    from tuner._searcher import ProbeSearcher
    from tuner._sweep import SweepResult, run_sweep, summary_table
    from tuner._sweep_plan import SWEEP_FIELDS, SweepOptions, SweepPlan, plan_sweep
    from tuner._tune import TuneOutcome

_SWEEP_PARTS = ("SweepResult", "run_sweep", "summary_table")
_PLAN_PARTS = ("SWEEP_FIELDS", "SweepOptions", "SweepPlan", "plan_sweep")
_RAY_PARTS = {
    "optimize": "tuner._optimize",
    "fit_searcher": "tuner._fit",
    "FitOutcome": "tuner._fit",
    "TuneOutcome": "tuner._tune",
    "ProbeSearcher": "tuner._searcher",
    "train_on_workers": "tuner._distributed",
    "WorkerFailed": "tuner._distributed",
    **dict.fromkeys(_SWEEP_PARTS, "tuner._sweep"),
    **dict.fromkeys(_PLAN_PARTS, "tuner._sweep_plan"),
}


def __getattr__(name: str) -> object:
    if name in _RAY_PARTS:
        import importlib

        return getattr(importlib.import_module(_RAY_PARTS[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "WorkerFailed",
    "train_on_workers",
    "JobData",
    "JobFolder",
    "Policy",
    "PolicyContext",
    "FitOutcome",
    "TuneOutcome",
    "fit_searcher",
    "is_out_of_memory",
    "on_data",
    "DataFigures",
    "policy_for",
    "profile_yaml",
    "stages_config",
    "train_config",
    "trial_bundle",
    "write_json",
    "JobResult",
    "JobSpec",
    "ProbeSearcher",
    "SWEEP_FIELDS",
    "SweepOptions",
    "SweepPlan",
    "SweepResult",
    "plan_sweep",
    "run_sweep",
    "summary_table",
    "POLICIES",
    "Candidate",
    "DataStats",
    "Device",
    "DominancePruner",
    "Hardware",
    "Measurement",
    "Probe",
    "ProbeResult",
    "ProbeSample",
    "Stage",
    "StageChoice",
    "StageSpec",
    "StagesConfig",
    "TimeModel",
    "build_job_spec",
    "check_profile",
    "choose",
    "device_for",
    "discover",
    "dominates",
    "format_size",
    "job_choices",
    "load_stages",
    "optimize",
    "parse_size",
    "presets",
    "probe_space",
    "read_trials_csv",
    "result_schema",
]
