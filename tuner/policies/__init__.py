"""Stage policies, one per module, behind ``Policy.choose``; ``POLICIES`` maps names to them."""

from tuner.policies._base import Candidate, DataStats, Policy, StageChoice
from tuner.policies._production import LargestCapacity, capacity_cap
from tuner.policies._throughput import TimeBoundThroughput

POLICIES: dict[str, Policy] = {
    "time_bound_throughput": TimeBoundThroughput(),
    "largest_capacity": LargestCapacity(),
}

__all__ = [
    "POLICIES",
    "Candidate",
    "DataStats",
    "LargestCapacity",
    "Policy",
    "StageChoice",
    "TimeBoundThroughput",
    "capacity_cap",
]
