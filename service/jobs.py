"""The job lifecycle: validate and queue, submit to Ray within ``max_running_jobs``, follow each
job's Ray status, cancel, and reconcile after a restart of the service.

A job runs as the Ray job ``stagetune optimize --spec <job folder>/spec.json``: the same entry
point as ``ray job submit``. Its folder under ``jobs/`` holds the spec and everything the job
writes (result.json, profiles/, trials.csv, progress.json). A training run of a saved profile is
a job of kind ``train``: ``stagetune train --profile <job folder>/profile.yaml``, its report in
report.json and its run under runs/.

Requests never wait for Ray: a new job is queued and the follower thread (``following``) is woken
to submit it. A request is checked against the follower's last reading of the cluster's nodes,
read again before a request is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import shlex
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from service.runner import RayJobs
from service.settings import Settings
from service.store import JobRecord, JobState, JobStore

log = logging.getLogger(__name__)


NODES_MAX_AGE = 10.0  # seconds a reading of the cluster's nodes serves requests


class InvalidJob(ValueError):
    """The request names something that cannot run; the message names the field."""


def _new_job_id() -> str:
    """When it was asked for, and six random hex digits (as ``stagetune optimize`` names jobs)."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


class _AskRay(Exception):
    """The last reading of the nodes would refuse the request: ask Ray before refusing it."""


class JobManager:
    def __init__(self, settings: Settings, store: JobStore, ray_jobs: RayJobs) -> None:
        self.settings = settings
        self.store = store
        self.ray = ray_jobs
        # request handlers and the follower change job states: one at a time, so a queued job
        # is submitted once
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._full = False  # every slot taken at the last dispatch: a new job need not wake it
        self._warm = threading.Event()  # set once the validation code is loaded
        self._nodes: list[dict[str, float]] | None = None
        self._nodes_read = 0.0

    def folder(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def create(
        self, options: dict[str, Any], idempotency_key: str | None, may_ask_ray: bool = True
    ) -> tuple[JobRecord, bool]:
        """Validate ``options`` (the options of ``stagetune optimize``) and queue the job.

        Without ``may_ask_ray``, the nodes are the last reading only, and a request they would
        refuse raises ``_AskRay`` instead (nothing is written before)."""
        if idempotency_key is not None:
            known = self.store.by_idempotency_key(idempotency_key)
            if known is not None:
                return known, False
        job_id = _new_job_id()
        spec = self._validate({**options, "job_id": job_id}, may_ask_ray)
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
        record, new = self.store.create(job_id, options, idempotency_key)
        if not self._full:
            self._wake.set()  # the follower submits it
        return record, new

    async def create_soon(
        self, options: dict[str, Any], idempotency_key: str | None
    ) -> tuple[JobRecord, bool]:
        """``create`` for a request handler. It runs on the event loop (about a millisecond of
        CPU that holds the GIL wherever it runs; a thread per request only adds switches) when
        it needs no more than that: the validation code loaded and a recent reading of the
        nodes that accepts the request. Otherwise (the first requests, while torch imports; a
        request to refuse, or a stale reading, which Ray must be asked about) in a thread, so
        the loop never waits for an import or for Ray."""
        if self._warm.is_set() and self._nodes_recent():
            try:
                return self.create(options, idempotency_key, may_ask_ray=False)
            except _AskRay:
                pass
        return await asyncio.to_thread(self.create, options, idempotency_key)

    def create_training(self, name: str, version: int, profile: str) -> JobRecord:
        """Queue a training run of version ``version`` of saved profile ``name`` (``profile``:
        its YAML) as a Ray job: ``stagetune train --profile``, the run in the job's folder."""
        config = yaml.safe_load(profile)
        data = config.get("data") or {}
        self._check_data(data.get("source"), "data.source")
        self._check_data(data.get("labels"), "data.labels")
        job_id = _new_job_id()
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "profile.yaml").write_text(profile)
        record, _ = self.store.create(job_id, {"profile": name, "version": version}, kind="train")
        if not self._full:
            self._wake.set()
        return record

    def _check_data(self, data: Any, key: str) -> None:
        """A job reads data from the data roots only (or synthetic complexes)."""
        if data is None or data == "synthetic":
            return
        path = Path(str(data)).expanduser().resolve()
        roots = [r.expanduser().resolve() for r in self.settings.data_roots]
        if not any(path.is_relative_to(r) for r in roots):
            allowed = ", ".join(map(str, roots)) or "none (set STAGETUNE_DATA_ROOTS)"
            raise InvalidJob(f"{key}: {data} is outside the data roots; accepted: {allowed}")

    def _validate(self, options: dict[str, Any], may_ask_ray: bool = True) -> dict[str, Any]:
        from tuner import ConfigError, build_job_spec

        for key in ("storage", "address"):
            if key in options:
                raise InvalidJob(f"{key}: set by the service, not by a request")
        self._check_data(options.get("data"), "data")
        try:
            spec = build_job_spec({**options, "storage": str(self.settings.jobs_dir)})
            try:  # against the cluster, not left pending
                spec.trial_bundle(self.nodes() if may_ask_ray else self._nodes or [])
            except ConfigError:  # refuse only what the cluster as it is now cannot run
                if not may_ask_ray:
                    raise _AskRay from None
                spec.trial_bundle(self.nodes(fresh=True))
        except ConfigError as exc:
            raise InvalidJob(str(exc)) from None
        return spec.model_dump(mode="json")

    def nodes(self, fresh: bool = False) -> list[dict[str, float]]:
        """The resources of the cluster's alive nodes, read from Ray at most every
        ``NODES_MAX_AGE`` seconds unless ``fresh``."""
        if fresh or not self._nodes_recent():
            self._nodes = self.ray.node_resources()
            self._nodes_read = time.monotonic()
        assert self._nodes is not None
        return self._nodes

    def _nodes_recent(self) -> bool:
        return self._nodes is not None and time.monotonic() - self._nodes_read <= NODES_MAX_AGE

    def warm_up(self) -> None:
        """Load what validating a request needs (torch, the tuner, the config files) so that the
        first request does not wait for it; then move every object that exists now out of the
        garbage collector's sight: torch's millions of long-lived objects would otherwise make
        each full collection pause the server for a tenth of a second."""
        from tuner import build_job_spec

        build_job_spec({"storage": str(self.settings.jobs_dir)})
        gc.collect()
        gc.freeze()
        self._warm.set()

    @contextlib.contextmanager
    def following(self, poll_seconds: float) -> Iterator[None]:
        """A thread that follows Ray: every ``poll_seconds`` it reconciles running jobs with
        Ray, submits queued ones and rereads the nodes; woken by a queued job or a freed slot,
        it submits at once."""
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

        def warm_up() -> None:
            try:
                self.warm_up()
            except Exception:  # the first request meets it again, and says what is wrong
                log.exception("loading the job validation failed")
            finally:
                self._warm.set()

        threading.Thread(target=warm_up, name="stagetune-warm-up", daemon=True).start()
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
        with self._lock:
            self._dispatch()

    def _dispatch(self) -> None:
        free = self.settings.max_running_jobs - self.store.count(JobState.RUNNING)
        self._full = free <= 0  # until a job ends (seen by refresh) or is cancelled
        if free <= 0:
            return
        for job in self.store.in_state(JobState.QUEUED, limit=free):
            entrypoint = self._entrypoint(job)
            submission = f"stagetune-{job.id}"
            # a search's driver only schedules trials; a training run trains where it runs
            gpus = 1.0 if job.kind == "train" and any(n.get("GPU") for n in self.nodes()) else 0
            try:
                self.ray.submit(submission, entrypoint, gpus=gpus)
            except Exception as exc:  # Ray refused it: the job fails, the service goes on
                log.exception("job %s: submission to Ray failed", job.id)
                self.store.update(job.id, state=JobState.FAILED, error=f"submission: {exc}",
                                  finished=time.time())  # fmt: skip
                self._wake.set()  # its slot is free for the next queued job
                continue
            self.store.update(job.id, state=JobState.RUNNING, submission_id=submission,
                              started=time.time())  # fmt: skip
            log.info("job %s submitted to Ray as %s", job.id, submission)

    def _entrypoint(self, job: JobRecord) -> str:
        folder = self.folder(job.id)
        if job.kind == "train":  # the report lands whole, or not at all
            report = shlex.quote(str(self.result_path(job)))
            return (
                f"stagetune train --profile {shlex.quote(str(folder / 'profile.yaml'))} "
                f"--output {shlex.quote(str(folder / 'runs'))} data.cache_dir=null --json "
                f"> {report}.tmp && mv {report}.tmp {report}"
            )
        return f"stagetune optimize --spec {shlex.quote(str(folder / 'spec.json'))} --json"

    def result_path(self, job: JobRecord) -> Path:
        """What a finished job leaves: result.json of a search, report.json of a training run."""
        return self.folder(job.id) / ("report.json" if job.kind == "train" else "result.json")

    def refresh(self) -> None:
        """Follow every running job's Ray status; then fill freed slots from the queue.

        A job Ray no longer knows (its head was restarted) is judged by its folder: a
        result.json (report.json of a training run) means it finished; otherwise it failed, and
        says why.
        """
        with self._lock:
            self._refresh()
            self._dispatch()

    def _refresh(self) -> None:
        for job in self.store.in_state(JobState.RUNNING):
            assert job.submission_id is not None
            seen = self.ray.state(job.submission_id)
            if seen is None:
                done = self.result_path(job).is_file()
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

    def cancel(self, job: JobRecord) -> JobRecord:
        with self._lock:
            current = self.store.get(job.id) or job
            if current.state is JobState.RUNNING and current.submission_id is not None:
                self.ray.stop(current.submission_id)
            if not current.state.finished:
                self.store.update(job.id, state=JobState.CANCELLED, finished=time.time())
        self._wake.set()  # its slot is free: the follower submits the next queued job
        updated = self.store.get(job.id)
        assert updated is not None
        return updated

    def progress(self, job_id: str) -> dict[str, Any]:
        path = self.folder(job_id) / "progress.json"
        return dict(json.loads(path.read_text())) if path.is_file() else {"stages": {}}

    def result(self, job: JobRecord) -> dict[str, Any] | None:
        path = self.result_path(job)
        return dict(json.loads(path.read_text())) if path.is_file() else None
