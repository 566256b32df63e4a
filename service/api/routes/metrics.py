"""``GET /metrics``: Prometheus text. Jobs by state (from the store, so a restarted service
reports them all) and request counts and latencies per route."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from service.api.deps import Manager, authorized
from service.store import JobState

router = APIRouter(tags=["metrics"], dependencies=[Depends(authorized)])


class Metrics:
    """One registry per app, so that apps (and tests) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("stagetune_jobs", "jobs by state", ["state"], registry=self.registry)
        self.requests = Counter(
            "stagetune_http_requests", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "stagetune_http_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )  # fmt: skip

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        self.latency.labels(request.method, name).observe(time.perf_counter() - started)
        self.requests.labels(request.method, name, str(response.status_code)).inc()
        return response


@router.get("/metrics")
def metrics(request: Request, jobs: Manager) -> Response:
    board: Metrics = request.app.state.metrics
    for state in JobState:
        board.jobs.labels(state.value).set(jobs.store.count(state))
    return Response(generate_latest(board.registry), media_type=CONTENT_TYPE_LATEST)
