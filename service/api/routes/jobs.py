"""``POST /optimize`` and the ``/jobs`` resource."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from service.api.deps import Job, Manager, authorized
from service.api.errors import (
    BODY,
    FAULTS,
    NOT_FOUND,
    REFUSED,
    UNAUTHORIZED,
    UNINDEXED,
    invalid,
)
from service.jobs import InvalidJob
from service.schemas import JobList, JobPublic, Refusal
from service.store import JobState
from stagetune_api import JobFiles, JobOptions, JobResult, Stage, TrainRunReport, finite_json

router = APIRouter(
    tags=["jobs"],
    dependencies=[Depends(authorized)],
    responses={**REFUSED, **UNAUTHORIZED, **UNINDEXED},
)
_STATE: dict[int | str, dict[str, Any]] = {
    409: {"model": Refusal, "description": "the job has no such file (yet): its state"}
}


@router.post(
    "/optimize",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={
        200: {"model": JobPublic, "description": "the job this Idempotency-Key made"},
        409: {"model": Refusal, "description": "this Idempotency-Key made a job of other options"},
        **BODY,
        **FAULTS,
    },
)
async def optimize(
    request: Request,
    jobs: Manager,
    options: JobOptions,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> Response:
    """Queue a job; 202 with its id and links. An option not given takes the preset's value.
    A repeated ``Idempotency-Key`` returns the job created with it (200)."""
    try:
        record, new = await jobs.create_soon(options.given(), idempotency_key)
    except InvalidJob as exc:
        return invalid(exc.problems)
    body = jobs.public(record, str(request.base_url)).model_dump_json()
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
    base = str(request.base_url)
    return JobList(jobs=[jobs.public(r, base) for r in records], total=total)


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
async def get_job(request: Request, jobs: Manager, job: Job) -> JobPublic:
    """A job's state and progress (on the event loop: a SQLite row and one small file)."""
    return jobs.public(job, str(request.base_url))


@router.get(
    "/jobs/{job_id}/result",
    response_model=JobResult | TrainRunReport,
    responses={**NOT_FOUND, **_STATE},
)
def get_result(jobs: Manager, job: Job) -> Response:
    """The job's result.json (``JobResult``); a training run's report (``TrainRunReport``).
    409 with the job's state while there is none."""
    result = jobs.result(job) if job.state is JobState.SUCCEEDED else None
    if result is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state.value}")
    return JSONResponse(finite_json(result))


@router.delete("/jobs/{job_id}", response_model=JobPublic, responses={**NOT_FOUND, **FAULTS})
def cancel_job(request: Request, jobs: Manager, job: Job) -> JobPublic:
    """Cancel: a queued job never starts, a running one is stopped on Ray."""
    return jobs.public(jobs.cancel(job), str(request.base_url))


@router.get("/jobs/{job_id}/trials", responses={**NOT_FOUND, **_STATE})
def get_trials(jobs: Manager, job: Job) -> list[dict[str, Any]]:
    """trials.csv as typed rows: every variable of every trial; 409 while there is none. JSON
    has no NaN or infinity: such a value (a diverged loss) is null."""
    from tuner import read_trials_csv

    path = JobFiles(jobs.folder(job.id)).trials_csv
    if not path.is_file():
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} is {job.state.value}")
    return [finite_json(row) for row in read_trials_csv(path)]


@router.get(
    "/jobs/{job_id}/profiles/{stage}",
    responses={
        200: {"content": {"application/yaml": {}, "application/json": {}}},
        **NOT_FOUND,
        **_STATE,
    },
)
def get_job_profile(
    jobs: Manager, job: Job, stage: Stage, format: Literal["yaml", "json"] = "yaml"
) -> Response:
    """``profiles/<stage>.yaml``, what ``stagetune train --profile`` accepts; ``format=json``:
    the same as JSON."""
    files = JobFiles(jobs.folder(job.id))
    path = files.path / files.profile(stage)
    if not path.is_file():
        raise HTTPException(
            status.HTTP_409_CONFLICT if not job.state.finished else status.HTTP_404_NOT_FOUND,
            f"job {job.id} ({job.state.value}) has no {stage.value} profile",
        )
    if format == "json":
        return JSONResponse(yaml.safe_load(path.read_text()))
    return PlainTextResponse(path.read_text(), media_type="application/yaml")
