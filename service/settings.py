"""The service's settings: one typed object, read from ``STAGETUNE_*`` variables (and nothing
else in the service reads the environment)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STAGETUNE_", extra="ignore")

    api_token: SecretStr | None = Field(
        default=None, description="when set, every route but /healthz needs this bearer token"
    )
    state_dir: Path = Field(
        default=Path("~/.stagetune/service"),
        description="the SQLite file (jobs.sqlite) and the job folders (jobs/)",
    )
    ray_address: str | None = Field(
        default=None,
        description="the Ray dashboard to submit jobs to (http://HOST:8265); none: a local head",
    )
    ray_auth_token_file: Path = Field(
        default=Path("~/.ray/auth_token"), description="the Ray cluster's token, when it has one"
    )
    max_running_jobs: int = Field(default=1, gt=0, description="jobs beyond it wait in a queue")
    data_roots: list[Path] = Field(
        default_factory=list, description="folders a job's data path must lie in"
    )
    max_body_bytes: int = Field(
        default=2**20, ge=1024, le=2**30, description="a request body over it is answered 413"
    )
    access_log: bool = Field(default=True, description="a log line per request, on stdout")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, lt=65536)
    dashboard_port: int = Field(default=8265, ge=0, lt=65536, description="of a local head")
    ray_metrics: bool = Field(
        default=False,
        description="a local head exports Ray's metrics (Prometheus text, on 127.0.0.1, with no "
        "token: job and session names to anyone on the machine); off, it serves none",
    )

    @cached_property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @cached_property
    def jobs_dir(self) -> Path:
        return self.state_path / "jobs"
