"""Saved profiles (``/profiles``): named, versioned training configurations kept by the service,
downloadable as the YAML that ``stagetune train --profile`` accepts, and trained on Ray as jobs
(``POST /profiles/{name}/train``); ``POST /configs/check``, the rules a configuration must meet,
answered key by key; and ``GET /choices``, what a new job may name."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from service import profiles
from service.api.deps import Manager, authorized
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
from service.profile_store import ProfileStore
from service.profiles import InvalidConfig
from service.schemas import (
    NAME,
    Choices,
    ConfigChecked,
    ConfigIn,
    JobPublic,
    ProfileIn,
    ProfileList,
    ProfilePublic,
)
from stagetune_api import Stage

router = APIRouter(
    tags=["profiles"],
    dependencies=[Depends(authorized)],
    responses={**REFUSED, **UNAUTHORIZED, **UNINDEXED},
)


def _store(request: Request) -> ProfileStore:
    return request.app.state.profiles  # type: ignore[no-any-return]


@router.post("/configs/check", response_model=ConfigChecked, responses=BODY)
async def check_config(given: ConfigIn) -> Response:
    """Check a training configuration with the rules of ``stagetune train``; nothing is saved."""
    try:
        config, digest = await asyncio.to_thread(profiles.check, given.config)
    except InvalidConfig as exc:
        return invalid(exc.problems)
    return JSONResponse(ConfigChecked(valid=True, config_hash=digest, config=config).model_dump())


@router.get("/profiles", response_model=ProfileList)
def list_profiles(request: Request) -> ProfileList:
    """The latest version of every saved profile."""
    base = str(request.base_url)
    return ProfileList(profiles=[profiles.public(r, n, base) for r, n in _store(request).latest()])


@router.put(
    "/profiles/{name}",
    response_model=ProfilePublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "the same configuration as the latest version"},
        **BODY,
        **FAULTS,
    },
)
async def save_profile(
    request: Request,
    name: Annotated[str, PathParam(pattern=NAME, description="letters, digits, _ . -")],
    given: ProfileIn,
) -> Response:
    """Save a configuration as a new version of profile ``name`` (201), after checking it as
    ``POST /configs/check`` does: an invalid configuration is never saved (422). Saving the
    configuration of the latest version again changes nothing (200)."""
    try:
        config, digest = await asyncio.to_thread(profiles.check, given.config)
    except InvalidConfig as exc:
        return invalid(exc.problems)
    store = _store(request)
    record, new = await asyncio.to_thread(
        store.save,
        name,
        config,
        digest,
        given.stage.value if given.stage else None,
        given.job_id,
        given.description,
    )
    versions = store.versions(name)
    body = profiles.public(record, versions, str(request.base_url)).model_dump(mode="json")
    return JSONResponse(body, status_code=status.HTTP_201_CREATED if new else status.HTTP_200_OK)


@router.get(
    "/profiles/{name}",
    response_model=ProfilePublic,
    responses={200: {"content": {"application/yaml": {}}}, **NOT_FOUND},
)
def get_profile(
    request: Request,
    name: Annotated[str, PathParam(pattern=NAME)],
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    format: Literal["json", "yaml"] = "json",
) -> Response:
    """A version of a profile (the latest by default); ``format=yaml``: the file that
    ``stagetune train --profile`` accepts, as a download."""
    store = _store(request)
    record = store.get(name, version)
    if record is None:
        which = f"version {version} of " if version else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {which}profile {name!r}")
    if format == "yaml":
        return PlainTextResponse(
            profiles.profile_file(record),
            media_type="application/yaml",
            headers={"Content-Disposition": f'attachment; filename="{profiles.filename(record)}"'},
        )
    public = profiles.public(record, store.versions(name), str(request.base_url))
    return JSONResponse(public.model_dump(mode="json"))


@router.post(
    "/profiles/{name}/train",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, **FAULTS},
)
def train_profile(
    request: Request,
    jobs: Manager,
    name: Annotated[str, PathParam(pattern=NAME)],
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """Start a training run of a version of the profile (the latest by default): a job of kind
    ``train`` on Ray, ``stagetune train --profile`` of that version, followed like any job; its
    report is its result. Its data must lie in the data roots (422)."""
    record = _store(request).get(name, version)
    if record is None:
        which = f"version {version} of " if version else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {which}profile {name!r}")
    try:
        job = jobs.create_training(record.name, record.version, profiles.profile_file(record))
    except InvalidJob as exc:
        return invalid(exc.problems)
    body = jobs.public(job, str(request.base_url)).model_dump_json()
    return Response(body, status_code=status.HTTP_202_ACCEPTED, media_type="application/json")


@router.get("/choices", response_model=Choices)
def get_choices(request: Request, jobs: Manager) -> Choices:
    """What a new job may name: presets (with their options), stages, data roots, optimizers
    and schedulers."""
    from tuner import job_choices

    known = job_choices()
    return Choices(
        presets=known["presets"],
        stages=list(Stage),
        data_roots=[str(r) for r in jobs.settings.data_roots],
        optimizers=known["optimizers"],
        schedulers=known["schedulers"],
        config_choices=known["config"],
    )
