"""The FastAPI app: built here, nothing else (routes in ``service/api/routes/``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from service.api.errors import FAULT_HANDLERS, on_invalid_request
from service.api.methods import on_method_not_allowed
from service.api.routes import health, jobs, metrics, profiles, ui
from service.api.routes.metrics import Metrics, MetricsMiddleware
from service.jobs import JobManager
from service.profile_store import ProfileStore
from service.runner import LocalHead, RayJobs
from service.settings import Settings
from service.store import JobStore


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
            head: LocalHead | None = None
            if ray_jobs is None:
                address, token = settings.ray_address, settings.ray_auth_token_file
                if address is None:  # a head of the service's own, restarted when it dies
                    head = LocalHead(
                        settings.dashboard_port, settings.state_path, settings.ray_metrics
                    )
                    address, token = stack.enter_context(head).url, head.token_file
                jobs_api = RayJobs(address, token)
            store = JobStore(settings.state_path / "jobs.sqlite", settings.jobs_dir)
            store.rebuild()  # the job folders are the record of truth
            profile_store = ProfileStore(store.path, settings.state_path / "profiles", store.file)
            profile_store.rebuild()
            manager = JobManager(settings, store, ray_jobs or jobs_api, head)
            manager.refresh()  # reconcile what was running when the service last stopped
            app.state.settings, app.state.manager = settings, manager
            app.state.profiles = profile_store
            stack.enter_context(manager.following(poll_seconds))
            yield

    app = FastAPI(
        title="stagetune",
        description="The best ViSNet configuration per development stage, measured on Ray.",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        generate_unique_id_function=_operation_id,
    )
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, on_method_not_allowed)
    for fault, handler in FAULT_HANDLERS.items():
        app.add_exception_handler(fault, handler)
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(metrics.router)
    app.include_router(profiles.router)
    app.include_router(ui.router)
    return app


def _operation_id(route: APIRoute) -> str:
    """Each operation's id in /openapi.json: its function's name (``optimize``, ``get_job``,
    ``list_jobs``, ``cancel_job`` ...), unique across the routers, instead of FastAPI's default
    (name, path and method: ``get_job_jobs__job_id__get``), so a client generated from the
    schema calls ``optimize(...)``."""
    return route.name
