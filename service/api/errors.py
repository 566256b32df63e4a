"""One shape for every refusal of a request's content (422): ``Invalid``, a ``detail`` line per
problem and the same as ``problems``, each naming its key. Whether the request's body does not
match its schema (``RequestValidationError``, answered by ``on_invalid_request``) or names
something that cannot run (a job outside the data roots, an override no config accepts), the
client reads one format; the OpenAPI document declares it for every route (``REFUSED``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.schemas import Invalid, Problem
from stagetune_api import JobOptions

#: Keys of a job the service sets itself.
SERVER_SET = ("storage", "address", "job_id")
_BODIES: dict[str, type[BaseModel]] = {"/optimize": JobOptions}
_KEYED = re.compile(r"^\s*([A-Za-z_][\w.\[\]-]*): (.+)$")


REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": Invalid, "description": "what was refused, key by key"}
}


def invalid(problems: Iterable[tuple[str, str]]) -> JSONResponse:
    listed = [Problem(key=k, message=m) for k, m in problems]
    body = Invalid(detail="\n".join(f"{p.key}: {p.message}" for p in listed), problems=listed)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def problems_in(text: str) -> list[tuple[str, str]]:
    """``key: message`` lines of a message (a ``ConfigError``'s), each as a problem; a message
    without such lines is one problem of the whole request."""
    lines = [m.groups() for m in map(_KEYED.match, text.splitlines()) if m]
    keyed = [(k, v) for k, v in lines if k not in ("invalid job", "invalid configuration")]
    return keyed or [("(request)", text.strip())]


async def on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = _BODIES.get(request.url.path)
    return invalid(_describe(error, body) for error in exc.errors())


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
