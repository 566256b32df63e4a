"""The queue's follower: a thread that submits queued jobs to Ray while fewer than
``max_running_jobs`` run, follows each running job's Ray status, and reconciles after a restart
of the service.

A job runs as a Ray job whose entry point is a ``stagetune`` command in its folder: ``stagetune
optimize --spec spec.json`` (the same entry point as ``ray job submit``), or, for a training run
of a saved profile, ``stagetune train --profile profile.yaml --report report.json``.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from service.runner import RayJobs
from service.settings import Settings
from service.store import JobRecord, JobState, JobStore
from stagetune_api import JobKind

log = logging.getLogger(__name__)


def result_path(folder: Path, job: JobRecord) -> Path:
    """What a finished job leaves: result.json of a search, report.json of a training run."""
    return folder / ("report.json" if job.kind == JobKind.TRAIN.value else "result.json")


def entrypoint(folder: Path, job: JobRecord) -> str:
    """The command the Ray job runs, in the job's folder."""
    if job.kind == JobKind.TRAIN.value:
        return (
            f"stagetune train --profile {shlex.quote(str(folder / 'profile.yaml'))} "
            f"--output {shlex.quote(str(folder / 'runs'))} data.cache_dir=null "
            f"--report {shlex.quote(str(result_path(folder, job)))}"
        )
    return f"stagetune optimize --spec {shlex.quote(str(folder / 'spec.json'))} --json"


class Follower:
    """Moves jobs between states. Request handlers (queueing, cancelling) and the follower's
    thread change states under one lock, so a queued job is submitted once."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        ray_jobs: RayJobs,
        nodes: Callable[[], list[dict[str, float]]],
    ) -> None:
        self.settings, self.store, self.ray, self.nodes = settings, store, ray_jobs, nodes
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._full = False  # every slot taken at the last dispatch: a new job need not wake it

    def folder(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def queued(self) -> None:
        """A job was queued: submit it now, unless every slot is taken."""
        if not self._full:
            self._wake.set()

    def freed(self) -> None:
        """A slot was freed (a job was cancelled): submit the next queued job."""
        self._wake.set()

    @contextlib.contextmanager
    def following(self, poll_seconds: float) -> Iterator[None]:
        """The thread: every ``poll_seconds`` it reconciles running jobs with Ray, submits
        queued ones and rereads the nodes; woken by a queued job or a freed slot, it submits at
        once."""
        stop = threading.Event()

        def follow() -> None:
            next_poll = 0.0
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_poll:
                        next_poll = time.monotonic() + poll_seconds
                        self.refresh()
                        self.nodes()
                    else:
                        self.dispatch()
                except Exception:  # one failed poll (Ray busy) is no reason to stop following
                    log.exception("following the jobs failed; trying again")
                self._wake.wait(max(0.0, next_poll - time.monotonic()))
                self._wake.clear()  # before the work it asks for: a later wake is not lost

        thread = threading.Thread(target=follow, name="stagetune-follower", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self._wake.set()
            thread.join(timeout=60)

    def dispatch(self) -> None:
        """Submit queued jobs, oldest first, while fewer than ``max_running_jobs`` run."""
        with self.lock:
            self._dispatch()

    def _dispatch(self) -> None:
        free = self.settings.max_running_jobs - self.store.count(JobState.RUNNING)
        self._full = free <= 0  # until a job ends (seen by refresh) or is cancelled
        if free <= 0:
            return
        for job in self.store.in_state(JobState.QUEUED, limit=free):
            submission = f"stagetune-{job.id}"
            # a search's driver only schedules trials; a training run trains where it runs
            train = job.kind == JobKind.TRAIN.value
            gpus = 1.0 if train and any(n.get("GPU") for n in self.nodes()) else 0
            try:
                self.ray.submit(submission, entrypoint(self.folder(job.id), job), gpus=gpus)
            except Exception as exc:  # Ray refused it: the job fails, the service goes on
                log.exception("job %s: submission to Ray failed", job.id)
                self.store.update(job.id, state=JobState.FAILED, error=f"submission: {exc}",
                                  finished=time.time())  # fmt: skip
                self._wake.set()  # its slot is free for the next queued job
                continue
            self.store.update(job.id, state=JobState.RUNNING, submission_id=submission,
                              started=time.time())  # fmt: skip
            log.info("job %s submitted to Ray as %s", job.id, submission)

    def refresh(self) -> None:
        """Follow every running job's Ray status; then fill freed slots from the queue.

        A job Ray no longer knows (its head was restarted) is judged by its folder: a
        result.json (report.json of a training run) means it finished; otherwise it failed, and
        says why.
        """
        with self.lock:
            self._refresh()
            self._dispatch()

    def _refresh(self) -> None:
        for job in self.store.in_state(JobState.RUNNING):
            assert job.submission_id is not None
            seen = self.ray.state(job.submission_id)
            if seen is None:
                done = result_path(self.folder(job.id), job).is_file()
                state, message = (
                    (JobState.SUCCEEDED, None)
                    if done
                    else (JobState.FAILED, "Ray lost the job (was its cluster restarted?)")
                )
            else:
                state, message = seen
            if state is JobState.RUNNING:
                continue
            self.store.update(job.id, state=state, finished=time.time(),
                              error=message if state is JobState.FAILED else None)  # fmt: skip
            log.info("job %s %s", job.id, state.value)
