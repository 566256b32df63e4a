"""What a job request must meet before it is queued: every path it names (its data, its probe
sample, path-valued overrides) inside the data roots, its preset one of configs/presets/, its
options and configurations accepted by the tuner (``tuner.build_job_spec``, the same checks as
the command line's), and a trial bundle some node of the cluster can hold
(``tuner.trial_bundle``).

The nodes come from the last reading of the cluster (at most ``NODES_MAX_AGE`` seconds old);
only a request that reading would refuse asks Ray again, so requests rarely wait for Ray.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.runner import RayJobs, RayUnreachable
from service.settings import Settings
from stagetune_api import JobSpec, override_value

NODES_MAX_AGE = 10.0  # seconds a reading of the cluster's nodes serves requests
#: Keys of a training configuration whose value is a path on the cluster's nodes.
PATH_KEYS = frozenset(
    {"data.source", "data.labels", "data.cache_dir", "train.output_dir", "optimizer.export_json"}
)
#: Those a training run of a saved profile reads or writes as the profile says (its output
#: folder and cache are the job's own: the entry point sets them).
PROFILE_PATH_KEYS = frozenset({"data.source", "data.labels", "optimizer.export_json"})
#: Keys whose value ``synthetic`` means synthetic complexes, not a path.
_SYNTHETIC = frozenset({"data", "sample", "data.source"})


class InvalidJob(ValueError):
    """The request names something that cannot run: ``problems``, each with the key it is
    about (``(request)`` where it is about the whole of it), and the message, a line each."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [("(request)", message.strip())]

    @classmethod
    def of(cls, key: str, why: str) -> InvalidJob:
        return cls(f"{key}: {why}", [(key, why)])


class AskRay(Exception):
    """The last reading of the nodes would refuse the request: ask Ray before refusing it."""


class JobValidator:
    def __init__(self, settings: Settings, ray_jobs: RayJobs) -> None:
        self.settings = settings
        self.ray = ray_jobs
        self.warm = threading.Event()  # set once the validation code is loaded
        self._nodes: list[dict[str, float]] | None = None
        self._nodes_read = 0.0
        self._default_config: dict[str, Any] | None = None

    def check_data(self, data: Any, key: str, named: str = "") -> None:
        """A job reads data from the data roots only (or synthetic complexes, where ``key`` is a
        job's data or probe sample); ``named``: what the refusal calls the value
        (``data.labels=/x``), else the value."""
        if data is None or (data == "synthetic" and key in _SYNTHETIC):
            return
        path = Path(str(data)).expanduser().resolve()
        roots = [r.expanduser().resolve() for r in self.settings.data_roots]
        if not any(path.is_relative_to(r) for r in roots):
            allowed = ", ".join(map(str, roots)) or "none (set STAGETUNE_DATA_ROOTS)"
            raise InvalidJob.of(
                key, f"{named or data} is outside the data roots; accepted: {allowed}"
            )

    def check_paths(self, options: dict[str, Any]) -> None:
        """Every path a job names lies in the data roots: its data, its probe sample, and each
        override of a path-valued key (``PATH_KEYS``)."""
        self.check_data(options.get("data"), "data")
        self.check_data(options.get("sample"), "sample")
        for i, text in enumerate(options.get("overrides") or ()):
            key = str(text).partition("=")[0].strip().lstrip("+~")
            if key not in PATH_KEYS:
                continue  # only a path-valued key's value is parsed here
            value = override_value(str(text))
            if _named_path(key, value):
                self.check_data(value, f"overrides[{i}]", str(text))

    def check_config(self, config: dict[str, Any], keys: frozenset[str] = PATH_KEYS) -> None:
        """Every path-valued key (``keys``) of a whole training configuration that differs from
        configs/ lies in the data roots, however it was set: an override of the key or of its
        section (``data={source: ...}``), quoted or not, or a saved profile. (configs/ is the
        service's own: its paths are where the service was installed to write.)"""
        defaults = self._defaults()
        for path in sorted(keys):
            section, _, name = path.partition(".")
            value = (config.get(section) or {}).get(name)
            default = (defaults.get(section) or {}).get(name)
            if value != default and _named_path(path, value):
                self.check_data(value, path)

    def _defaults(self) -> dict[str, Any]:
        if self._default_config is None:
            from tuner import train_config

            self._default_config = train_config(JobSpec(job_id="defaults")).to_dict()
        return self._default_config

    def check_preset(self, options: dict[str, Any]) -> None:
        """A preset is one of configs/presets/, by name (never a path)."""
        from tuner import presets

        name = options.get("preset")
        known = presets()
        if name is not None and name not in known:
            raise InvalidJob.of("preset", f"{name!r} is not a preset; accepted: {', '.join(known)}")

    def spec(self, options: dict[str, Any], may_ask_ray: bool = True) -> dict[str, Any]:
        """The validated spec (as JSON) of ``options`` with its ``job_id``; ``InvalidJob`` names
        what is refused. Without ``may_ask_ray``, a request the last reading of the nodes would
        refuse raises ``AskRay`` instead."""
        from tuner import ConfigError, build_job_spec, train_config, trial_bundle

        self.check_paths(options)
        self.check_preset(options)
        try:
            spec = build_job_spec({**options, "storage": str(self.settings.jobs_dir)})
            self.check_config(train_config(spec).to_dict())
            try:  # against the cluster, not left pending
                trial_bundle(spec, self.nodes() if may_ask_ray else self._nodes or [])
            except ConfigError:  # refuse only what the cluster as it is now cannot run
                if not may_ask_ray:
                    raise AskRay from None
                trial_bundle(spec, self.nodes(fresh=True))
        except ConfigError as exc:
            raise InvalidJob(str(exc), exc.problems) from None
        return spec.model_dump(mode="json")

    def nodes(self, fresh: bool = False) -> list[dict[str, float]]:
        """The resources of the cluster's alive nodes, read from Ray at most every
        ``NODES_MAX_AGE`` seconds unless ``fresh``; while Ray does not answer, the last reading
        (``RayUnreachable`` when there is none)."""
        if fresh or not self.nodes_recent():
            try:
                self._nodes = self.ray.node_resources()
            except RayUnreachable:
                if self._nodes is None:
                    raise
                return self._nodes  # the last reading: a job waits in the queue for Ray
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


def _named_path(key: str, value: Any) -> bool:
    """Whether the value of ``key`` names a path. The parsed value decides, never its spelling:
    text does (``None``, ``NULL!`` or ``True`` written as text are relative paths), None, a
    boolean, empty text and synthetic data (``data.source=synthetic``) do not."""
    if key in _SYNTHETIC and value == "synthetic":
        return False
    return isinstance(value, str) and value != ""
