"""Hardware discovery, the memory and time probe, stage policies and the Ray Tune searches.

The probe needs torch and the model only: it runs on any machine, Ray or not. The searches and
``optimize`` import Ray; they are loaded on first use, so ``from tuner import Probe`` works on a
machine without Ray.
"""

from typing import TYPE_CHECKING

from model import ConfigError
from tuner._hardware import Device, Hardware, device_for, discover, format_size, parse_size
from tuner._job import JobSpec, build_job_spec, check_profile, job_choices, presets
from tuner._local import choose, probe_space
from tuner._probe import Measurement, Probe, ProbeResult, ProbeSample, TimeModel
from tuner._pruning import DominancePruner, dominates
from tuner._stages import Stage, StagesConfig, StageSpec, load_stages
from tuner.policies import POLICIES, Candidate, DataStats, StageChoice

if TYPE_CHECKING:
    from tuner._optimize import optimize
    from tuner._results import JobResult, read_trials_csv, result_schema
    from tuner._searcher import ProbeSearcher

_RAY_PARTS = {
    "optimize": "tuner._optimize",
    "JobResult": "tuner._results",
    "result_schema": "tuner._results",
    "read_trials_csv": "tuner._results",
    "ProbeSearcher": "tuner._searcher",
}


def __getattr__(name: str) -> object:
    if name in _RAY_PARTS:
        import importlib

        return getattr(importlib.import_module(_RAY_PARTS[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "JobResult",
    "JobSpec",
    "ProbeSearcher",
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
