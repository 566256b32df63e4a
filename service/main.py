"""The FastAPI app: built here, nothing else (routes in ``service/api/routes/``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from service.api.errors import on_invalid_request
from service.api.routes import health, jobs, metrics, profiles, ui
from service.api.routes.metrics import Metrics, MetricsMiddleware
from service.jobs import JobManager
from service.runner import RayJobs, local_head
from service.settings import Settings
from service.store import JobStore, ProfileStore


def create_app(
    settings: Settings | None = None,
    poll_seconds: float = 1.0,
    ray_jobs: RayJobs | None = None,
) -> FastAPI:
    """The app; ``ray_jobs`` replaces the connection to Ray's job API (the one seam to Ray)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            if ray_jobs is None:
                address = settings.ray_address or stack.enter_context(
                    local_head(settings.dashboard_port, settings.state_path)
                )
                jobs_api = RayJobs(address, settings.ray_auth_token_file)
            store = JobStore(settings.state_path / "jobs.sqlite")
            manager = JobManager(settings, store, ray_jobs or jobs_api)
            manager.refresh()  # reconcile what was running when the service last stopped
            app.state.settings, app.state.manager = settings, manager
            app.state.profiles = ProfileStore(store.path)
            stack.enter_context(manager.following(poll_seconds))
            yield

    app = FastAPI(
        title="stagetune",
        description="The best ViSNet configuration per development stage, measured on Ray.",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(metrics.router)
    app.include_router(profiles.router)
    app.include_router(ui.router)
    return app
