"""The job lifecycle, as the routes see it: validate and queue (``service.validation``), follow
on Ray (``service.follower``), cancel, and read what a job left in its folder.

Requests never wait for Ray: a new job is queued and the follower is woken to submit it. Its
folder under ``jobs/`` holds the spec (``spec.json``) and everything the job writes
(result.json, profiles/, trials.csv, progress.json); a training run of a saved profile holds its
``profile.yaml``, its report (``report.json``) and its run under runs/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from service.follower import Follower, RayHealth
from service.runner import LocalHead, RayJobs, RayUnreachable
from service.schemas import JobPublic
from service.settings import Settings
from service.store import JobRecord, JobState, JobStore
from service.validation import PROFILE_PATH_KEYS, AskRay, InvalidJob, JobValidator
from stagetune_api import (
    JobFiles,
    JobKind,
    JobOptions,
    Progress,
    TrainOptions,
    new_job_id,
    write_atomic,
)

log = logging.getLogger(__name__)

__all__ = ["InvalidJob", "JobManager", "KeyReused"]


class JobManager:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        ray_jobs: RayJobs,
        head: LocalHead | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ray = ray_jobs
        self.validator = JobValidator(settings, ray_jobs)
        self.follower = Follower(settings, store, ray_jobs, self.validator.nodes, head)
        self._large = asyncio.Semaphore(1)

    @property
    def health(self) -> RayHealth:
        return self.follower.health

    def folder(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    def create(
        self,
        options: dict[str, Any],
        idempotency_key: str | None,
        may_ask_ray: bool = True,
        ticket: Ticket | None = None,
    ) -> tuple[JobRecord, bool]:
        """Validate ``options`` (the options given, as ``JobOptions.given`` has them) and queue
        the job. Without ``may_ask_ray``, the nodes are the last reading only, and a request they
        would refuse raises ``AskRay`` instead (nothing is written before). A repeated
        ``idempotency_key`` returns its job, if asked with the same options (``KeyReused``
        otherwise). A job that cannot be written whole (a full disk) leaves nothing behind, nor
        does one whose ``ticket`` was given up while it was validated (past its time limit)."""
        if idempotency_key is not None:
            known = self.store.by_idempotency_key(idempotency_key)
            if known is not None:
                return _same_request(known, options, idempotency_key), False
        job_id = new_job_id()
        spec = self.validator.spec({**options, "job_id": job_id}, may_ask_ray)
        if ticket is not None and not ticket.commit():
            raise InvalidJob(_too_slow())
        with self._made(job_id) as folder:
            write_atomic(JobFiles(folder).spec, json.dumps(spec, indent=2) + "\n")
            record, new = self.store.create(job_id, options, idempotency_key)
        if not new:  # the same key, from a concurrent request: this folder is not its job's
            shutil.rmtree(folder, ignore_errors=True)
            return _same_request(record, options, str(idempotency_key)), False
        self.follower.queued()
        return record, new

    @contextlib.contextmanager
    def _made(self, job_id: str) -> Iterator[Path]:
        """The new job's folder; removed again if what is inside fails (a job is whole or
        absent)."""
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    async def create_soon(
        self, options: dict[str, Any], idempotency_key: str | None
    ) -> tuple[JobRecord, bool]:
        """``create`` for a request handler. It runs on the event loop (about a millisecond of
        CPU that holds the GIL wherever it runs; a thread per request only adds switches) when
        it needs no more than that: the validation code loaded and a recent reading of the
        nodes that accepts the request. Otherwise (the first requests, while torch imports; a
        request to refuse, or a stale reading, which Ray must be asked about; a request of many
        overrides or knobs, whose validation takes longer) in a thread, so the loop never waits
        for an import, for Ray or for a large request."""
        if self.validator.warm.is_set() and self.validator.nodes_recent() and _small(options):
            try:
                return self.create(options, idempotency_key, may_ask_ray=False)
            except AskRay:
                pass
        if _small(options):
            return await asyncio.to_thread(self.create, options, idempotency_key)
        return await self._create_large(options, idempotency_key)

    async def _create_large(
        self, options: dict[str, Any], idempotency_key: str | None
    ) -> tuple[JobRecord, bool]:
        """``create`` in a thread, one at a time (threads of pure Python starve the event loop),
        answered within ``VALIDATION_SECONDS``: past them the request is refused and its thread,
        which cannot be stopped, ends without writing anything, still holding the one place."""
        await self._large.acquire()
        ticket = Ticket()
        done = asyncio.ensure_future(
            asyncio.to_thread(self.create, options, idempotency_key, True, ticket)
        )
        done.add_done_callback(lambda _: self._large.release())
        try:
            return await asyncio.wait_for(asyncio.shield(done), VALIDATION_SECONDS)
        except asyncio.TimeoutError:
            if not ticket.give_up():  # its job is being written: a moment more
                return await done
            done.add_done_callback(_quietly)  # its InvalidJob is nobody's to answer
            raise InvalidJob(_too_slow()) from None

    def create_training(self, name: str, version: int, profile: str) -> JobRecord:
        """Queue a training run of version ``version`` of saved profile ``name`` (``profile``:
        its YAML) as a Ray job: ``stagetune train --profile``, the run in the job's folder."""
        self.validator.check_config(yaml.safe_load(profile) or {}, PROFILE_PATH_KEYS)
        job_id = new_job_id()
        options = TrainOptions(profile=name, version=version).model_dump()
        with self._made(job_id) as folder:
            write_atomic(JobFiles(folder).train_profile, profile)
            record, _ = self.store.create(job_id, options, kind=JobKind.TRAIN.value)
        self.follower.queued()
        return record

    @contextlib.contextmanager
    def following(self, poll_seconds: float) -> Iterator[None]:
        """Load the validation code in the background, and follow the jobs while inside."""

        def warm_up() -> None:
            try:
                self.validator.warm_up()
            except Exception:  # the first request meets it again, and says what is wrong
                log.exception("loading the job validation failed")

        threading.Thread(target=warm_up, name="stagetune-warm-up", daemon=True).start()
        with self.follower.following(poll_seconds):
            yield

    def warm_up(self) -> None:
        self.validator.warm_up()

    def nodes(self, fresh: bool = False) -> list[dict[str, float]]:
        return self.validator.nodes(fresh)

    def refresh(self) -> None:
        self.follower.refresh()

    def dispatch(self) -> None:
        self.follower.dispatch()

    def cancel(self, job: JobRecord) -> JobRecord:
        """Cancel a job: its state is written first, then a running job is stopped on Ray; if
        Ray cannot be reached (``RayUnreachable``), the state is put back and nothing changed.
        While the follower sees Ray not answering, a running job is not tried (it would wait for
        Ray's timeout): ``RayUnreachable`` at once."""
        with self.follower.lock:
            current = self.store.get(job.id) or job
            down = self.health.state  # read once: the follower replaces it
            if current.state is JobState.RUNNING and down is not None:
                raise RayUnreachable(down[0])
            if not current.state.finished:
                self.store.update(job.id, state=JobState.CANCELLED, finished=time.time())
                if current.state is JobState.RUNNING and current.submission_id is not None:
                    try:
                        self.ray.stop(current.submission_id)
                    except RayUnreachable:
                        self.store.update(job.id, state=current.state, finished=None)
                        raise
                    except RuntimeError as exc:  # Ray answered; did the job end there?
                        seen = self.ray.state(current.submission_id)
                        if seen is not None and seen[0] is JobState.RUNNING:
                            self.store.update(job.id, state=current.state, finished=None)
                            raise RayUnreachable(f"Ray did not stop the job: {exc}") from exc
                        log.warning("job %s: stopping it on Ray: %s", job.id, exc)
        self.follower.forget(job.id)
        self.follower.freed()
        updated = self.store.get(job.id)
        assert updated is not None
        return updated

    def progress(self, job_id: str) -> Progress:
        """The job's progress.json; empty while there is none (or it cannot be read)."""
        try:
            return JobFiles(self.folder(job_id)).read_progress() or Progress()
        except (OSError, ValidationError):
            return Progress()

    def result_path(self, job: JobRecord) -> Path:
        return JobFiles(self.folder(job.id)).answer(job.kind)

    def result(self, job: JobRecord) -> dict[str, Any] | None:
        path = self.result_path(job)
        return dict(json.loads(path.read_text())) if path.is_file() else None

    def public(self, record: JobRecord, base_url: str) -> JobPublic:
        """What the API shows of a job."""
        end = record.finished or (time.time() if record.started else None)
        base = base_url.rstrip("/")
        return JobPublic(
            job_id=record.id,
            kind=JobKind(record.kind),
            state=record.state,
            options=_options(record),
            created=record.created,
            started=record.started,
            finished=record.finished,
            elapsed_seconds=None if record.started is None or end is None else end - record.started,
            error=record.error,
            progress=self.progress(record.id).stages,
            links={
                "self": f"{base}/jobs/{record.id}",
                "result": f"{base}/jobs/{record.id}/result",
                "dashboard": f"{self.ray.address}/#/jobs/{record.submission_id or ''}",
            },
        )


#: The most overrides and knobs a request validated on the event loop may have.
SMALL_REQUEST = 32
#: Seconds a larger request may take to validate (the largest body of the worst overrides takes
#: about 2.5 s on one core: BENCHMARKS.md, "/healthz while the worst overrides are validated").
VALIDATION_SECONDS = 10.0


class Ticket:
    """A request validated in a thread, past its time limit or not: the thread writes its job
    only if ``commit`` comes before the request's ``give_up``, and the request is refused only
    if ``give_up`` comes first (else its job is being written, and it waits for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decided: str | None = None

    def commit(self) -> bool:
        return self._decide("committed")

    def give_up(self) -> bool:
        return self._decide("given up")

    def _decide(self, which: str) -> bool:
        with self._lock:
            self._decided = self._decided or which
            return self._decided == which


def _too_slow() -> str:
    return (
        f"validating the request took longer than {VALIDATION_SECONDS:g} s; send fewer or "
        "smaller overrides (each value is YAML: every one is parsed and checked)"
    )


def _quietly(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # read: never "exception was never retrieved"


def _small(options: dict[str, Any]) -> bool:
    knobs = sum(len(k) for k in (options.get("space") or {}).values())
    return len(options.get("overrides") or ()) + knobs <= SMALL_REQUEST


class KeyReused(Exception):
    """An ``Idempotency-Key`` sent again with a different request (409)."""


def _same_request(known: JobRecord, options: dict[str, Any], key: str) -> JobRecord:
    """The job ``key`` created, if ``options`` are the ones it was created with."""
    if known.options != options:
        raise KeyReused(
            f"Idempotency-Key {key!r} made job {known.id} with other options; send a new key "
            "for a new job"
        )
    return known


def _options(record: JobRecord) -> JobOptions | TrainOptions:
    """The options a job was stored with, typed. A record stored before a bound was added is
    shown as it was stored, never refused: a stored record must not make a read fail."""
    kind = TrainOptions if record.kind == JobKind.TRAIN.value else JobOptions
    try:
        return kind.model_validate(record.options)
    except ValidationError:
        return kind.model_construct(**record.options)
