"""Saved profiles (``/profiles``): named, versioned training configurations kept by the service,
downloadable as the YAML that ``stagetune train --profile`` accepts, and trained on Ray as jobs
(``POST /profiles/{name}/train``); ``POST /configs/check``, the rules a configuration must meet,
answered key by key; and ``GET /choices``, what a new job may name."""

from __future__ import annotations

import asyncio
import shlex
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from service.api.deps import Manager, authorized
from service.api.routes.jobs import Stage
from service.jobs import InvalidJob
from service.schemas import JobPublic, job_public
from service.store import ProfileRecord, ProfileStore

router = APIRouter(tags=["profiles"], dependencies=[Depends(authorized)])

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Problem(BaseModel):
    key: str = Field(description="the dotted key of the configuration, e.g. optimizer.lr")
    message: str


class Invalid(BaseModel):
    detail: str = Field(description="every problem, one per line")
    problems: list[Problem]


class ConfigIn(BaseModel):
    config: dict[str, Any] = Field(
        description="sections of a training configuration (model, optimizer, scheduler, data, "
        "train), e.g. a job's profiles/<stage>.yaml as JSON; missing keys come from configs/"
    )


class ConfigChecked(BaseModel):
    valid: bool
    config_hash: str = Field(description="SHA-256 of the whole configuration")
    config: dict[str, Any] = Field(description="the whole configuration, every key typed")


class ProfileIn(ConfigIn):
    stage: Stage | None = Field(default=None, description="the stage it was chosen for")
    job_id: str | None = Field(default=None, description="the job it came from", max_length=64)
    description: str | None = Field(default=None, max_length=500)


class ProfilePublic(BaseModel):
    name: str
    version: int
    versions: int = Field(description="versions saved under this name")
    created: float
    stage: Stage | None
    job_id: str | None
    description: str | None
    config_hash: str
    config: dict[str, Any]
    links: dict[str, str]
    command: str = Field(description="download this version and train with it")


class ProfileList(BaseModel):
    profiles: list[ProfilePublic]


class Choices(BaseModel):
    presets: dict[str, dict[str, Any]] = Field(description="each preset's job options")
    stages: list[Stage]
    data_roots: list[str] = Field(description="folders a job's data may lie in")
    optimizers: list[str]
    schedulers: list[str]


def _store(request: Request) -> ProfileStore:
    return request.app.state.profiles  # type: ignore[no-any-return]


def check(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The whole configuration ``config`` composes to, and its hash; ``InvalidConfig`` names
    each key that is not accepted."""
    from tuner import ConfigError, check_profile

    try:
        validated = check_profile(config)
    except ConfigError as exc:
        raise InvalidConfig(str(exc), exc.problems) from None
    return validated.to_dict(), validated.digest()


class InvalidConfig(ValueError):
    def __init__(self, message: str, problems: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message)
        self.problems = problems or (("(configuration)", message),)

    def response(self) -> JSONResponse:
        body = Invalid(
            detail=str(self),
            problems=[Problem(key=k, message=m) for k, m in self.problems],
        )
        return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": Invalid, "description": "the configuration, key by key"}
}


@router.post("/configs/check", response_model=ConfigChecked, responses=_INVALID)
async def check_config(given: ConfigIn) -> Response:
    """Check a training configuration with the rules of ``stagetune train``; nothing is saved."""
    try:
        config, digest = await asyncio.to_thread(check, given.config)
    except InvalidConfig as exc:
        return exc.response()
    return JSONResponse(ConfigChecked(valid=True, config_hash=digest, config=config).model_dump())


@router.get("/profiles", response_model=ProfileList)
def list_profiles(request: Request) -> ProfileList:
    """The latest version of every saved profile."""
    return ProfileList(profiles=[_public(r, n, request) for r, n in _store(request).latest()])


@router.put(
    "/profiles/{name}",
    response_model=ProfilePublic,
    status_code=status.HTTP_201_CREATED,
    responses={**_INVALID, 200: {"description": "the same configuration as the latest version"}},
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
        config, digest = await asyncio.to_thread(check, given.config)
    except InvalidConfig as exc:
        return exc.response()
    store = _store(request)
    record, new = await asyncio.to_thread(
        store.save, name, config, digest, given.stage.value if given.stage else None,
        given.job_id, given.description,
    )  # fmt: skip
    versions = store.versions(name)
    body = _public(record, versions, request).model_dump(mode="json")
    return JSONResponse(body, status_code=status.HTTP_201_CREATED if new else status.HTTP_200_OK)


@router.get(
    "/profiles/{name}",
    response_model=ProfilePublic,
    responses={200: {"content": {"application/yaml": {}}}},
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
        filename = _filename(record)
        return PlainTextResponse(
            _yaml(record, filename),
            media_type="application/yaml",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    public = _public(record, store.versions(name), request)
    return JSONResponse(public.model_dump(mode="json"))


@router.post(
    "/profiles/{name}/train", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED
)
def train_profile(
    request: Request,
    jobs: Manager,
    name: Annotated[str, PathParam(pattern=NAME)],
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> JobPublic:
    """Start a training run of a version of the profile (the latest by default): a job of kind
    ``train`` on Ray, ``stagetune train --profile`` of that version, followed like any job; its
    report is its result. Its data must lie in the data roots (422)."""
    record = _store(request).get(name, version)
    if record is None:
        which = f"version {version} of " if version else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {which}profile {name!r}")
    try:
        job = jobs.create_training(record.name, record.version, _yaml(record, _filename(record)))
    except InvalidJob as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return job_public(job, jobs, request)


@router.get("/choices", response_model=Choices)
def choices(request: Request, jobs: Manager) -> Choices:
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
    )


def _filename(record: ProfileRecord) -> str:
    return f"{record.name}-v{record.version}.yaml"


def _yaml(record: ProfileRecord, filename: str) -> str:
    from tuner._results import profile_yaml

    meta = {
        "description": record.description or f"stagetune profile {record.name}",
        "profile": record.name,
        "version": record.version,
        "stage": record.stage,
        "job_id": record.job_id,
        "config_hash": record.config_hash,
    }
    return profile_yaml(record.config, meta, filename)


def _public(record: ProfileRecord, versions: int, request: Request) -> ProfilePublic:
    base = str(request.base_url).rstrip("/")
    url = f"{base}/profiles/{quote(record.name)}?version={record.version}"
    filename = _filename(record)
    auth = '"Authorization: Bearer $STAGETUNE_API_TOKEN"'
    command = (
        f"curl -fsS -H {auth} {shlex.quote(url + '&format=yaml')} -o {shlex.quote(filename)}"
        f" && stagetune train --profile {shlex.quote(filename)}"
    )
    return ProfilePublic(
        name=record.name,
        version=record.version,
        versions=versions,
        created=record.created,
        stage=Stage(record.stage) if record.stage else None,
        job_id=record.job_id,
        description=record.description,
        config_hash=record.config_hash,
        config=record.config,
        links={"self": url, "yaml": f"{url}&format=yaml"},
        command=command,
    )
