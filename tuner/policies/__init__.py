"""Stage policies, one per module, behind ``Policy``; ``POLICIES`` maps the names that
``configs/stages.yaml`` uses to them, and ``policy_for`` gives a stage's."""

from tuner._stages import StageSpec
from tuner.policies._base import (
    Candidate,
    DataStats,
    Policy,
    PolicyContext,
    StageChoice,
)
from tuner.policies._production import LargestCapacity, capacity_cap
from tuner.policies._throughput import TimeBoundThroughput

POLICIES: dict[str, Policy] = {p.name: p for p in (TimeBoundThroughput(), LargestCapacity())}


def policy_for(spec: StageSpec) -> Policy:
    return POLICIES[spec.policy]


__all__ = [
    "POLICIES",
    "Candidate",
    "DataStats",
    "LargestCapacity",
    "Policy",
    "PolicyContext",
    "StageChoice",
    "TimeBoundThroughput",
    "capacity_cap",
    "policy_for",
]
