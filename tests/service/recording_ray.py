"""Ray's job API as the service uses it, in memory: the one seam to Ray, for tests that must not
run real jobs (the fuzz) or that change what the cluster looks like."""

from __future__ import annotations

from service.runner import RayUnreachable
from service.store import JobState


class RecordingRay:
    """Ray's job API as the service uses it, in memory: jobs submitted run until stopped."""

    address = "http://127.0.0.1:0"

    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        self.entrypoints: list[tuple[str, float]] = []
        self.nodes = [{"CPU": 2.0, "GPU": 1.0, "accelerator_type:T4": 1.0}]
        self.node_reads = 0
        self.down = False  # True: every call raises RayUnreachable, as when Ray's head is gone
        self.refusals = 0  # the next submissions Ray refuses

    def ping(self) -> None:
        if self.down:
            raise RayUnreachable(f"Ray at {self.address} does not answer")

    def connect(self, address: str) -> None:
        self.address = address

    def submit(self, submission_id: str, entrypoint: str, gpus: float = 0) -> str:
        self.ping()
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("No available agent to submit job, please try again later.")
        if submission_id in self.jobs:
            raise RuntimeError(f"Job with submission_id {submission_id} already exists.")
        assert entrypoint.startswith(("stagetune optimize --spec ", "stagetune train --profile "))
        self.entrypoints.append((entrypoint, gpus))
        self.jobs[submission_id] = JobState.RUNNING
        return submission_id

    def state(self, submission_id: str) -> tuple[JobState, str | None] | None:
        self.ping()
        state = self.jobs.get(submission_id)
        return None if state is None else (state, None)

    def stop(self, submission_id: str) -> None:
        self.ping()
        self.jobs[submission_id] = JobState.CANCELLED

    def node_resources(self) -> list[dict[str, float]]:
        self.ping()
        self.node_reads += 1
        return [dict(n) for n in self.nodes]
