"""Hardware discovery, the memory and time probe, stage policies and (later) the Ray searches.

The probe needs torch and the model only: it runs on any machine, Ray or not.
"""

from tuner._hardware import Device, Hardware, device_for, discover, format_size, parse_size
from tuner._local import choose, probe_space
from tuner._probe import Measurement, Probe, ProbeResult, ProbeSample, TimeModel
from tuner._pruning import DominancePruner, dominates
from tuner._stages import Stage, StagesConfig, StageSpec, load_stages
from tuner.policies import POLICIES, Candidate, DataStats, StageChoice

__all__ = [
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
    "choose",
    "device_for",
    "discover",
    "dominates",
    "format_size",
    "load_stages",
    "parse_size",
    "probe_space",
]
