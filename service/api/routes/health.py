"""``GET /healthz``: no token needed. 200 while the service can run jobs; 503 with the reason
while Ray does not answer (the service's own head is then being restarted, or a cluster it does
not own is down), or while the job index or the state folder cannot be used (damaged, missing,
read-only or full: the follower repairs it). It reads what the follower and the requests last
saw, so it answers at once."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.schemas import Health

router = APIRouter(tags=["health"])
_UNHEALTHY = "Ray does not answer, or the job index cannot be used; `ray` and `store` say why"


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": _UNHEALTHY}},
)
async def healthz(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    ray, store = manager.health.state, manager.store.file.fault  # read once: each is replaced
    token = request.app.state.settings.api_token is not None
    if ray is None and store is None:
        return JSONResponse(Health(status="ok", ray="ok", token=token).model_dump())
    body = Health(
        token=token,
        status="unavailable" if ray is not None else "degraded",
        ray="ok" if ray is None else ray[0],
        since=None if ray is None else ray[1],
        store="ok" if store is None else store[0],
        store_since=None if store is None else store[1],
    )
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
