"""``GET /healthz``: no token needed. 200 while the service can run jobs; 503 with the reason
while Ray does not answer (the service's own head is then being restarted, or a cluster it does
not own is down). It reads what the follower last saw (every second), so it answers at once."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Ray does not answer; `ray` says why"}},
)
async def healthz(request: Request) -> JSONResponse:
    state = request.app.state.manager.health.state  # read once: the follower replaces it
    if state is None:
        return JSONResponse(Health(status="ok", ray="ok").model_dump())
    body = Health(status="unavailable", ray=state[0], since=state[1])
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
