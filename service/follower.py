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

from service.drivers import end_driver
from service.records import submission_of
from service.runner import LocalHead, RayJobs, RayUnreachable
from service.settings import Settings
from service.store import IndexFault, JobRecord, JobState, JobStore
from stagetune_api import JobFiles, JobKind

log = logging.getLogger(__name__)

SUBMIT_TRIES = 4  # a refused submission is tried again after 2, 4 and 8 seconds, then fails


class RayHealth:
    """What the service knows of its Ray: it answers, or since when and why it does not. The
    follower's thread writes it, request handlers read it: one tuple, replaced whole."""

    def __init__(self) -> None:
        self.state: tuple[str, float] | None = None  # (why, since when), or None: it answers

    @property
    def ok(self) -> bool:
        return self.state is None

    def up(self) -> None:
        state = self.state
        if state is not None:
            log.warning("Ray answers again (it did not for %.0f s)", time.time() - state[1])
        self.state = None

    def down(self, reason: str) -> None:
        state = self.state
        if state is None:
            log.warning("Ray is unavailable: %s", reason)
        self.state = (reason, time.time() if state is None else state[1])


def entrypoint(
    folder: Path, job: JobRecord, address: str | None = None, session: str | None = None
) -> str:
    """The command the Ray job runs, in the job's folder; a search joins the cluster whose GCS
    is at ``address`` (the service's own head's), never the one Ray's job supervisor would find
    in the machine-wide "current cluster" file (the Ray started last on the machine), and runs
    only if that cluster is Ray session ``session`` (the head's)."""
    files = JobFiles(folder)
    if job.kind == JobKind.TRAIN.value:
        return (
            f"stagetune train --profile {shlex.quote(str(files.train_profile))} "
            f"--output {shlex.quote(str(files.train_runs))} data.cache_dir=null "
            f"--report {shlex.quote(str(files.train_report))}"
        )
    joins = f" --address {shlex.quote(address)}" if address else ""
    if session:
        joins += f" --ray-session {shlex.quote(session)}"
    return f"stagetune optimize --spec {shlex.quote(str(files.spec))} --json{joins}"


class Follower:
    """Moves jobs between states. Request handlers (queueing, cancelling) and the follower's
    thread change states under one lock, so a queued job is submitted once."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        ray_jobs: RayJobs,
        nodes: Callable[[], list[dict[str, float]]],
        head: LocalHead | None = None,
    ) -> None:
        self.settings, self.store, self.ray, self.nodes = settings, store, ray_jobs, nodes
        self.head = head  # the service's own Ray head, restarted when it dies; None: not ours
        self.health = RayHealth()
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._full = False  # every slot taken at the last dispatch: a new job need not wake it
        self._tries: dict[str, tuple[int, float]] = {}  # refused submissions: tries, next try
        self._lost = "Ray lost the job (was its cluster restarted?)"

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
        """The thread: every ``poll_seconds`` it checks the job index (repairing it when it is
        damaged, missing or could not be written), reconciles running jobs with Ray, submits
        queued ones and rereads the nodes; woken by a queued job or a freed slot, it submits at
        once."""
        stop = threading.Event()

        def follow() -> None:
            next_poll = 0.0
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_poll:
                        next_poll = time.monotonic() + poll_seconds
                        if self.store.file.check() and self.watch():
                            self.refresh()
                            with contextlib.suppress(RayUnreachable):  # no node yet
                                self.nodes()
                    elif self.health.ok and self.store.file.fault is None:
                        self.dispatch()
                except IndexFault:  # kept in the file's fault: repaired at the next poll
                    pass
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

    def watch(self) -> bool:
        """Whether Ray answers. A head of the service's own that died is replaced by a new one
        (the jobs it ran are then failed by ``refresh``, saying so); a cluster the service does
        not own is reported down until it answers again."""
        try:
            self.ray.ping()
        except RayUnreachable as exc:
            if self.head is None or self.head.alive():
                self.health.down(str(exc))
                return False
            self.health.down(f"the local Ray head died ({exc}); starting a new one")
            died = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                self.ray.connect(self.head.restart())
            except Exception as failed:  # reported, and tried again at the next poll
                self.health.down(f"the local Ray head died and could not be restarted: {failed}")
                return False
            self._lost = f"the Ray head died at {died} and a new one was started: the job was lost"
        self.health.up()
        return True

    def dispatch(self) -> None:
        """Submit queued jobs, oldest first, while fewer than ``max_running_jobs`` run."""
        with self.lock:
            self._dispatch()

    def _dispatch(self) -> None:
        free = self.settings.max_running_jobs - self.store.count(JobState.RUNNING)
        self._full = free <= 0  # until a job ends (seen by refresh) or is cancelled
        if free <= 0:
            return
        waiting = {job_id for job_id, (_, at) in self._tries.items() if time.monotonic() < at}
        queued = self.store.in_state(JobState.QUEUED, limit=free + len(waiting))
        for job in [j for j in queued if j.id not in waiting][:free]:
            submission = submission_of(job.id)
            # a search's driver only schedules trials; a training run trains where it runs
            train = job.kind == JobKind.TRAIN.value
            gpus = 1.0 if train and any(n.get("GPU") for n in self.nodes()) else 0
            try:
                head = self.head
                command = entrypoint(
                    self.folder(job.id),
                    job,
                    None if head is None else head.gcs,
                    None if head is None else head.session,
                )
                self.ray.submit(submission, command, gpus=gpus)
            except RayUnreachable as exc:  # the job waits in the queue until Ray answers
                self.health.down(str(exc))
                return
            except Exception as exc:  # Ray refused it: tried again, then the job fails
                if self.ray.state(submission) is None:
                    self._refused(job, exc)
                    continue
                # Ray has it (its answer to an earlier try was lost): it runs
            self._tries.pop(job.id, None)
            self.store.update(
                job.id, state=JobState.RUNNING, submission_id=submission, started=time.time()
            )
            log.info("job %s submitted to Ray as %s", job.id, submission)

    def _refused(self, job: JobRecord, exc: Exception) -> None:
        tries = self._tries.get(job.id, (0, 0.0))[0] + 1
        if tries < SUBMIT_TRIES:
            self._tries[job.id] = (tries, time.monotonic() + 2.0**tries)
            log.warning(
                "job %s: Ray refused its submission (%s); trying again in %.0f s",
                job.id,
                exc,
                2.0**tries,
            )
            return
        self._tries.pop(job.id, None)
        log.error("job %s: Ray refused its submission %d times: %s", job.id, tries, exc)
        self.store.update(
            job.id,
            state=JobState.FAILED,
            finished=time.time(),
            error=f"Ray refused its submission {tries} times: {exc}",
        )
        self._wake.set()  # its slot is free for the next queued job

    def forget(self, job_id: str) -> None:
        """A job left the queue (cancelled): no submission of it is tried again."""
        self._tries.pop(job_id, None)

    def refresh(self) -> None:
        """Follow every running job's Ray status; then fill freed slots from the queue.

        A job Ray no longer knows (its head was restarted) is judged by its folder: a
        result.json (report.json of a training run) means it finished; otherwise it failed, and
        says why. Its driver, when it still runs under the service's own head, is ended
        (``service.drivers``).
        """
        with self.lock:
            try:
                self._refresh()
                self._dispatch()
            except RayUnreachable as exc:  # followed again once Ray answers
                self.health.down(str(exc))

    def _refresh(self) -> None:
        for job in self.store.in_state(JobState.RUNNING):
            assert job.submission_id is not None
            seen = self.ray.state(job.submission_id)
            if seen is None:
                done = JobFiles(self.folder(job.id)).answer(job.kind).is_file()
                state, message = (
                    (JobState.SUCCEEDED, None) if done else (JobState.FAILED, self._lost)
                )
                if self.head is not None:  # its driver ran on this machine, under the old head
                    end_driver(self.folder(job.id))
            else:
                state, message = seen
                if (
                    state is JobState.FAILED
                    and job.kind != JobKind.TRAIN.value
                    and JobFiles(self.folder(job.id)).answer(job.kind).is_file()
                ):  # a search that answered, some stage with no answer (its exit status 3)
                    state, message = JobState.SUCCEEDED, None
            if state is JobState.RUNNING:
                continue
            self.store.update(
                job.id,
                state=state,
                finished=time.time(),
                error=message if state is JobState.FAILED else None,
            )
            log.info("job %s %s", job.id, state.value)
