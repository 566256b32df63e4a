"""Dependencies of the routes: the job manager, the bearer token check and the job of a path.

They are coroutines: each is a few microseconds of work (a SQLite lookup at most), cheaper on
the event loop than a hop to the thread pool.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.jobs import JobManager
from service.store import JobRecord

_bearer = HTTPBearer(auto_error=False)


async def manager(request: Request) -> JobManager:
    return request.app.state.manager  # type: ignore[no-any-return]


async def authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With ``STAGETUNE_API_TOKEN`` set: the bearer token, compared in constant time."""
    token = request.app.state.settings.api_token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer <STAGETUNE_API_TOKEN>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def job(job_id: str, jobs: Annotated[JobManager, Depends(manager)]) -> JobRecord:
    record = jobs.store.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return record


Manager = Annotated[JobManager, Depends(manager)]
Job = Annotated[JobRecord, Depends(job)]
