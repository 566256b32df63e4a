"""The job manager between the routes and Ray: requests never wait for Ray, and a request is
refused only for what the cluster as it is now cannot run. Ray's job API is the in-memory
double here (tests/service/test_api.py runs the same paths against a real Ray head)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.jobs import InvalidJob, JobManager
from service.settings import Settings
from service.store import JobState, JobStore
from tests.service.live_server import until
from tests.service.recording_ray import RecordingRay

SMALL = {"preset": "quick", "stages": ["prototyping"], "tune": False, "fit_trials": 1}


class SlowRay(RecordingRay):
    """Submissions wait until ``release`` is set, as they do on a busy Ray head."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def submit(self, submission_id: str, entrypoint: str, gpus: float = 0) -> str:
        assert self.release.wait(30)
        return super().submit(submission_id, entrypoint, gpus)


@pytest.fixture
def manager(tmp_path):
    settings = Settings(state_dir=tmp_path)
    return JobManager(settings, JobStore(tmp_path / "jobs.sqlite"), RecordingRay())  # type: ignore[arg-type]


def test_a_request_waits_for_ray_only_to_be_refused(manager):
    manager.warm_up()
    ray = manager.ray
    manager.nodes()  # the follower's reading
    reads = ray.node_reads
    for _ in range(2):
        record, new = asyncio.run(manager.create_soon(dict(SMALL), None))
        assert new and record.state is JobState.QUEUED
    assert ray.node_reads == reads  # answered from the last reading

    ray.nodes.append({"CPU": 8.0, "GPU": 2.0})  # a bigger node joined since
    record, new = asyncio.run(manager.create_soon({**SMALL, "cpus_per_trial": 8}, None))
    assert new and record.state is JobState.QUEUED
    assert ray.node_reads == reads + 1  # the last reading would refuse it: Ray was asked

    with pytest.raises(InvalidJob, match=r"cpus_per_trial=64, but the most CPUs on one node is 8"):
        asyncio.run(manager.create_soon({**SMALL, "cpus_per_trial": 64}, None))
    assert len(manager.store.page()[0]) == 3  # a refused request leaves nothing


def test_a_queued_job_goes_to_ray_without_the_request_waiting_for_it(tmp_path):
    ray = SlowRay()
    manager = JobManager(Settings(state_dir=tmp_path), JobStore(tmp_path / "jobs.sqlite"), ray)  # type: ignore[arg-type]
    with manager.following(poll_seconds=60):  # no poll comes: the request wakes the follower
        started = time.monotonic()
        first, _ = manager.create(dict(SMALL), None)
        second, _ = manager.create(dict(SMALL), None)
        assert time.monotonic() - started < 5 and first.state is JobState.QUEUED
        ray.release.set()
        assert until(lambda: manager.store.get(first.id).state is JobState.RUNNING)
        assert manager.store.get(second.id).state is JobState.QUEUED  # one job runs at a time

        manager.cancel(manager.store.get(first.id))
        assert ray.jobs[f"stagetune-{first.id}"] is JobState.CANCELLED
        assert until(lambda: manager.store.get(second.id).state is JobState.RUNNING)


def test_a_job_stored_before_a_bound_existed_still_reads(manager):
    """Options a request could carry before they were bounded are shown as stored, never
    refused: a stored record must not make a read fail."""
    record, _ = manager.store.create("old-1", {"preset": "quick", "seed": 2**64}, None)
    public = manager.public(record, "http://127.0.0.1:8000/")
    assert public.options.seed == 2**64
    assert public.model_dump(mode="json")["options"]["seed"] == 2**64
    assert public.progress == {}


def test_a_search_with_a_stage_unanswered_succeeds_with_its_result(manager):
    """``stagetune optimize`` exits 3 when a stage has no answer: Ray calls the job failed, but
    it wrote its result.json, which says why; the service shows it succeeded."""
    manager.warm_up()
    record, _ = manager.create(dict(SMALL), None)
    manager.dispatch()
    running = manager.store.get(record.id)
    (manager.folder(record.id) / "result.json").write_text("{}")
    manager.ray.jobs[running.submission_id] = JobState.FAILED
    manager.refresh()
    assert manager.store.get(record.id).state is JobState.SUCCEEDED
