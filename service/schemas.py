"""What the routes answer (the request is the options of ``stagetune optimize``)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from service.jobs import JobManager
from service.store import JobRecord, JobState


class JobPublic(BaseModel):
    job_id: str
    kind: str = Field(description="optimize, or train: a training run of a saved profile")
    state: JobState
    options: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    elapsed_seconds: float | None
    error: str | None
    progress: dict[str, Any]
    links: dict[str, str]


class JobList(BaseModel):
    jobs: list[JobPublic]
    total: int


def job_public(record: JobRecord, jobs: JobManager, request: Request) -> JobPublic:
    end = record.finished or (time.time() if record.started else None)
    base = str(request.base_url).rstrip("/")
    return JobPublic(
        job_id=record.id,
        kind=record.kind,
        state=record.state,
        options=record.options,
        created=record.created,
        started=record.started,
        finished=record.finished,
        elapsed_seconds=None if record.started is None or end is None else end - record.started,
        error=record.error,
        progress=jobs.progress(record.id).get("stages", {}),
        links={
            "self": f"{base}/jobs/{record.id}",
            "result": f"{base}/jobs/{record.id}/result",
            "dashboard": f"{jobs.ray.address}/#/jobs/{record.submission_id or ''}",
        },
    )
