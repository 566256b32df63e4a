"""One shape for every refusal of a request's content (422): ``Invalid``, a ``detail`` line per
problem and the same as ``problems``, each naming its key. Whether the request's body does not
match its schema (``RequestValidationError``, answered by ``on_invalid_request``) or names
something that cannot run (a job outside the data roots, an override no config accepts), the
client reads one format; the OpenAPI document declares it for every route (``REFUSED``).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.jobs import KeyReused
from service.runner import RayUnreachable
from service.schemas import Invalid, Problem, Refusal
from service.sqlite_file import IndexFault
from stagetune_api import JobOptions, KeyedProblems

log = logging.getLogger(__name__)

#: Keys of a job the service sets itself.
SERVER_SET = ("storage", "address", "job_id")
_BODIES: dict[str, type[BaseModel]] = {"/optimize": JobOptions}


REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": Invalid, "description": "what was refused, key by key"}
}
#: What any route that needs the token answers without it.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Refusal, "description": "no valid bearer token (STAGETUNE_API_TOKEN)"}
}
#: What a route that writes to the state folder or reaches Ray may answer besides.
FAULTS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Refusal,
        "description": "Ray does not answer, the state folder is read-only, "
        "or the job index is being repaired; the reason is in detail, nothing was changed",
    },
    507: {"model": Refusal, "description": "the state folder's disk is full; nothing was changed"},
}
#: What any route that reads the job index may answer while it is repaired.
_REPAIRING = (
    "the job index is damaged, missing or cannot be written, and is being repaired; the reason "
    "is in detail"
)
UNINDEXED: dict[int | str, dict[str, Any]] = {503: {"model": Refusal, "description": _REPAIRING}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Refusal, "description": "no such"}}
#: What a route with a body answers to one that cannot be read: not UTF-8 (400), or over
#: ``STAGETUNE_MAX_BODY_BYTES`` (413). Text that is not JSON is a 422, naming the body.
BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "the body is not text (UTF-8)"},
    413: {
        "model": Refusal,
        "description": "the body is over STAGETUNE_MAX_BODY_BYTES: refused unread, as text when "
        "its Content-Length says so, else as JSON",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


#: A refusal lists this many problems at most, each message this long at most: a request of a
#: thousand bad overrides is told of the first ones, not sent a megabyte back.
MAX_PROBLEMS, MAX_MESSAGE = 50, 500


def invalid(problems: Iterable[tuple[str, str]]) -> JSONResponse:
    every = list(problems)
    listed = [Problem(key=k, message=_clip(m)) for k, m in every[:MAX_PROBLEMS]]
    if len(every) > MAX_PROBLEMS:
        more = len(every) - MAX_PROBLEMS
        listed.append(Problem(key="(request)", message=f"and {more} more problems like these"))
    body = Invalid(detail="\n".join(f"{p.key}: {p.message}" for p in listed), problems=listed)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


async def on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = _BODIES.get(request.url.path)
    return invalid(problem for error in exc.errors() for problem in _described(error, body))


def _described(error: dict[str, Any], body: type[BaseModel] | None) -> list[tuple[str, str]]:
    """The problems of one error: a check of several values (``KeyedProblems``: the body's text
    and numbers, the overrides, the spaces) names each key, under the key of the part it
    checked."""
    key, message = _describe(error, body)
    found = (error.get("ctx") or {}).get("error")
    if not isinstance(found, KeyedProblems):
        return [(key, message)]
    prefix = "" if key == "body" else f"{key}."
    return [(prefix + k, v) for k, v in found.problems]


def _describe(error: dict[str, Any], body: type[BaseModel] | None) -> tuple[str, str]:
    loc: Sequence[Any] = error.get("loc", ())
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    key = ".".join(parts) or "body"
    kind = error.get("type")
    if kind == "json_invalid":
        return "body", f"not valid JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
    if kind == "extra_forbidden":
        if parts and parts[-1] in SERVER_SET:
            return key, "set by the service, not by a request"
        accepted = f"; accepted: {', '.join(sorted(body.model_fields))}" if body else ""
        return key, f"unknown option{accepted}"
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return key, message


def _refusal(status_code: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(Refusal(detail=detail).model_dump(), status_code, headers=headers or None)


async def on_key_reused(request: Request, exc: Exception) -> JSONResponse:
    return _refusal(status.HTTP_409_CONFLICT, str(exc))


async def on_ray_unreachable(request: Request, exc: Exception) -> JSONResponse:
    return _refusal(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), **{"Retry-After": "5"})


_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS}
_DENIED = {errno.EACCES, errno.EPERM}


async def on_index_fault(request: Request, exc: Exception) -> JSONResponse:
    """The SQLite index is damaged, missing or cannot be written: 503 with the reason while the
    service repairs it (``SqliteFile.check``)."""
    return _refusal(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), **{"Retry-After": "2"})


async def on_storage_fault(request: Request, exc: Exception) -> JSONResponse:
    """A file or the SQLite index the service could not use: 507 when the disk is full, 503
    (with the reason) when it is read-only, denied, or SQLite is busy past its wait; anything
    else is the server's error (500, logged). A full, read-only or denied state folder is the
    index's fault too, until a write succeeds again (``/healthz`` says so meanwhile)."""
    text, code = str(exc), getattr(exc, "errno", None)
    if code in _FULL or "disk is full" in text:
        _index_failed(request, f"the state folder is full: {text}")
        return _refusal(status.HTTP_507_INSUFFICIENT_STORAGE, f"the state folder is full: {text}")
    if code in _READ_ONLY or "readonly" in text:
        _index_failed(request, f"the state folder cannot be written: {text}")
        return _refusal(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the state folder cannot be written: {text}"
        )
    if code in _DENIED:
        _index_failed(request, f"permission denied: {text}")
        return _refusal(status.HTTP_503_SERVICE_UNAVAILABLE, f"permission denied: {text}")
    if "locked" in text or "busy" in text:
        return _refusal(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the job index is busy: {text}",
            **{"Retry-After": "1"},
        )
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _refusal(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error; see the service's log")


def _index_failed(request: Request, reason: str) -> None:
    manager = getattr(request.app.state, "manager", None)
    if manager is not None:
        manager.store.file.failed(reason)


FAULT_HANDLERS = {
    IndexFault: on_index_fault,
    KeyReused: on_key_reused,
    RayUnreachable: on_ray_unreachable,
    sqlite3.OperationalError: on_storage_fault,
    OSError: on_storage_fault,
}
