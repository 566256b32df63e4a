"""What a path answers to a method none of its routes has: ``OPTIONS``, 204 with ``Allow``;
any other, 405 with ``Allow`` (RFC 9110, 15.5.6) and the usual ``Refusal``.

``Allow`` lists the methods of every route of the path, ``OPTIONS`` among them. (The router
alone names the methods of the first route whose path matched: ``GET`` for ``/jobs/{job_id}``,
whose ``DELETE`` is a route of its own.) No token is needed to ask: which methods a path has
is no secret, as the OpenAPI document says as much to anyone.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, status
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match

from service.schemas import Refusal

#: The methods a route may have (``OPTIONS`` is every path's, answered here).
METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """``OPTIONS`` and every method some route takes at the request's path: the router asked,
    method by method, whether a route would take the request with it."""
    allowed = ["OPTIONS"]
    for method in METHODS:
        scope = {**_path_of(request), "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return sorted(allowed)


def _path_of(request: Request) -> dict[str, Any]:
    """The part of the request's scope a route matches on, in a scope of its own."""
    return {
        key: request.scope[key] for key in ("type", "path", "root_path") if key in request.scope
    }


async def on_method_not_allowed(request: Request, exc: Exception) -> Response:
    allow = ", ".join(allowed_methods(request))
    if request.method == "OPTIONS":
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"Allow": allow})
    refusal = Refusal(detail=f"{request.url.path} does not take {request.method}; it takes {allow}")
    return JSONResponse(
        refusal.model_dump(), status.HTTP_405_METHOD_NOT_ALLOWED, headers={"Allow": allow}
    )
