"""What a job request must meet before it is queued: its data inside the data roots, its options
and configurations accepted by the tuner (``tuner.build_job_spec``, the same checks as the
command line's), and a trial bundle some node of the cluster can hold (``tuner.trial_bundle``).

The nodes come from the last reading of the cluster (at most ``NODES_MAX_AGE`` seconds old);
only a request that reading would refuse asks Ray again, so requests rarely wait for Ray.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

from service.runner import RayJobs
from service.settings import Settings

NODES_MAX_AGE = 10.0  # seconds a reading of the cluster's nodes serves requests


class InvalidJob(ValueError):
    """The request names something that cannot run; the message names the field."""


class AskRay(Exception):
    """The last reading of the nodes would refuse the request: ask Ray before refusing it."""


class JobValidator:
    def __init__(self, settings: Settings, ray_jobs: RayJobs) -> None:
        self.settings = settings
        self.ray = ray_jobs
        self.warm = threading.Event()  # set once the validation code is loaded
        self._nodes: list[dict[str, float]] | None = None
        self._nodes_read = 0.0

    def check_data(self, data: Any, key: str) -> None:
        """A job reads data from the data roots only (or synthetic complexes)."""
        if data is None or data == "synthetic":
            return
        path = Path(str(data)).expanduser().resolve()
        roots = [r.expanduser().resolve() for r in self.settings.data_roots]
        if not any(path.is_relative_to(r) for r in roots):
            allowed = ", ".join(map(str, roots)) or "none (set STAGETUNE_DATA_ROOTS)"
            raise InvalidJob(f"{key}: {data} is outside the data roots; accepted: {allowed}")

    def spec(self, options: dict[str, Any], may_ask_ray: bool = True) -> dict[str, Any]:
        """The validated spec (as JSON) of ``options`` with its ``job_id``; ``InvalidJob`` names
        what is refused. Without ``may_ask_ray``, a request the last reading of the nodes would
        refuse raises ``AskRay`` instead."""
        from tuner import ConfigError, build_job_spec, trial_bundle

        self.check_data(options.get("data"), "data")
        try:
            spec = build_job_spec({**options, "storage": str(self.settings.jobs_dir)})
            try:  # against the cluster, not left pending
                trial_bundle(spec, self.nodes() if may_ask_ray else self._nodes or [])
            except ConfigError:  # refuse only what the cluster as it is now cannot run
                if not may_ask_ray:
                    raise AskRay from None
                trial_bundle(spec, self.nodes(fresh=True))
        except ConfigError as exc:
            raise InvalidJob(str(exc)) from None
        return spec.model_dump(mode="json")

    def nodes(self, fresh: bool = False) -> list[dict[str, float]]:
        """The resources of the cluster's alive nodes, read from Ray at most every
        ``NODES_MAX_AGE`` seconds unless ``fresh``."""
        if fresh or not self.nodes_recent():
            self._nodes = self.ray.node_resources()
            self._nodes_read = time.monotonic()
        assert self._nodes is not None
        return self._nodes

    def nodes_recent(self) -> bool:
        return self._nodes is not None and time.monotonic() - self._nodes_read <= NODES_MAX_AGE

    def warm_up(self) -> None:
        """Load what validating a request needs (torch, the tuner, the config files) so that the
        first request does not wait for it; then move every object that exists now out of the
        garbage collector's sight: torch's millions of long-lived objects would otherwise make
        each full collection pause the server for a tenth of a second."""
        from tuner import build_job_spec

        try:
            build_job_spec({"storage": str(self.settings.jobs_dir)})
            gc.collect()
            gc.freeze()
        finally:
            self.warm.set()
