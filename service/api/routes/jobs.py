"""``POST /optimize`` and the ``/jobs`` resource."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from service.api.deps import Job, Manager, authorized
from service.jobs import InvalidJob
from service.schemas import JobList, JobPublic, job_public
from service.store import JobState


class Stage(str, Enum):
    """The stages (as in ``tuner.Stage``; the service does not import torch to name them)."""

    PROTOTYPING = "prototyping"
    VALIDATION = "validation"
    PRODUCTION = "production"


router = APIRouter(tags=["jobs"], dependencies=[Depends(authorized)])


@router.post("/optimize", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def optimize(
    request: Request,
    jobs: Manager,
    options: Annotated[dict[str, Any], Body(description="the options of `stagetune optimize`")],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Queue a job; 202 with its id and links. A repeated ``Idempotency-Key`` returns the job
    created with it."""
    try:
        record, new = await jobs.create_soon(options, idempotency_key)
    except InvalidJob as exc:
        raise HTTPException(422, str(exc)) from None
    body = job_public(record, jobs, request).model_dump_json()
    return Response(body, status_code=202 if new else 200, media_type="application/json")


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    request: Request,
    jobs: Manager,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # SQLite integers are 64-bit
) -> JobList:
    records, total = jobs.store.page(state, limit, offset)
    return JobList(jobs=[job_public(r, jobs, request) for r in records], total=total)


@router.get("/jobs/{job_id}", response_model=JobPublic)
async def get_job(request: Request, jobs: Manager, job: Job) -> JobPublic:
    """A job's state and progress (on the event loop: a SQLite row and one small file)."""
    return job_public(job, jobs, request)


@router.get("/jobs/{job_id}/result")
def get_result(jobs: Manager, job: Job) -> dict[str, Any]:
    """The job's result.json (a training run's report); 409 with the job's state while there
    is none."""
    result = jobs.result(job) if job.state is JobState.SUCCEEDED else None
    if result is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state.value}")
    return result


@router.delete("/jobs/{job_id}", response_model=JobPublic)
def cancel_job(request: Request, jobs: Manager, job: Job) -> JobPublic:
    """Cancel: a queued job never starts, a running one is stopped on Ray."""
    return job_public(jobs.cancel(job), jobs, request)


@router.get("/jobs/{job_id}/trials")
def get_trials(jobs: Manager, job: Job) -> list[dict[str, Any]]:
    """trials.csv as typed rows: every variable of every trial; 409 while there is none. JSON
    has no NaN or infinity: such a value (a diverged loss) is null."""
    from tuner import read_trials_csv

    path = jobs.folder(job.id) / "trials.csv"
    if not path.is_file():
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state.value}")
    rows = read_trials_csv(path)
    for row in rows:
        row["value"] = _finite_or_none(row["value"])
    return rows


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


@router.get(
    "/jobs/{job_id}/profiles/{stage}",
    response_class=PlainTextResponse,
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
def get_profile(
    jobs: Manager, job: Job, stage: Stage, format: Literal["yaml", "json"] = "yaml"
) -> Response:
    """``profiles/<stage>.yaml``, what ``stagetune train --profile`` accepts; ``format=json``:
    the same as JSON."""
    path = jobs.folder(job.id) / "profiles" / f"{stage.value}.yaml"
    if not path.is_file():
        raise HTTPException(
            status.HTTP_409_CONFLICT if not job.state.finished else status.HTTP_404_NOT_FOUND,
            f"job {job.id} ({job.state.value}) has no {stage.value} profile",
        )
    if format == "json":
        return JSONResponse(yaml.safe_load(path.read_text()))
    return PlainTextResponse(path.read_text(), media_type="application/yaml")
