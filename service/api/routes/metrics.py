"""``GET /metrics``: Prometheus text. Jobs by state (from the store, so a restarted service
reports them all) and request counts and latencies per route."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import Manager, authorized
from service.api.errors import UNAUTHORIZED, UNINDEXED
from service.store import JobState

router = APIRouter(
    tags=["metrics"], dependencies=[Depends(authorized)], responses={**UNAUTHORIZED, **UNINDEXED}
)


class Metrics:
    """One registry per app, so that apps (and tests) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("stagetune_jobs", "jobs by state", ["state"], registry=self.registry)
        self.requests = Counter(
            "stagetune_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stagetune_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status. Plain ASGI:
    it sees the response's first message and passes everything through untouched."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before responding

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, str(status)).inc()


@router.get(
    "/metrics",
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus' text format",
        }
    },
)
def get_metrics(request: Request, jobs: Manager) -> Response:
    board: Metrics = request.app.state.metrics
    for state in JobState:
        board.jobs.labels(state.value).set(jobs.store.count(state))
    return Response(generate_latest(board.registry), media_type=CONTENT_TYPE_LATEST)
