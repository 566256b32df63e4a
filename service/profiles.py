"""Saved profiles' domain: checking a configuration with the rules of ``stagetune train``, the
YAML file a version downloads as, and what the API shows of a version."""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import quote

from service.profile_store import ProfileRecord
from service.schemas import ProfilePublic
from stagetune_api import Stage


class InvalidConfig(ValueError):
    """A configuration that ``stagetune train`` would refuse; ``problems``: (key, message)."""

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message)
        self.problems = problems or (("(configuration)", message),)


def check(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The whole configuration ``config`` composes to, and its hash; ``InvalidConfig`` names
    each key that is not accepted."""
    from tuner import ConfigError, check_profile

    try:
        validated = check_profile(config)
    except ConfigError as exc:
        raise InvalidConfig(str(exc), exc.problems) from None
    return validated.to_dict(), validated.digest()


def filename(record: ProfileRecord) -> str:
    return f"{record.name}-v{record.version}.yaml"


def profile_file(record: ProfileRecord) -> str:
    """The version as the YAML file ``stagetune train --profile`` accepts."""
    from tuner import profile_yaml

    meta = {
        "description": record.description or f"stagetune profile {record.name}",
        "profile": record.name,
        "version": record.version,
        "stage": record.stage,
        "job_id": record.job_id,
        "config_hash": record.config_hash,
    }
    return profile_yaml(record.config, meta, filename(record))


def public(record: ProfileRecord, versions: int, base_url: str) -> ProfilePublic:
    """What the API shows of a version, with the command that downloads and trains it."""
    url = f"{base_url.rstrip('/')}/profiles/{quote(record.name)}?version={record.version}"
    name = filename(record)
    auth = '"Authorization: Bearer $STAGETUNE_API_TOKEN"'
    command = (
        f"curl -fsS -H {auth} {shlex.quote(url + '&format=yaml')} -o {shlex.quote(name)}"
        f" && stagetune train --profile {shlex.quote(name)}"
    )
    return ProfilePublic(
        name=record.name,
        version=record.version,
        versions=versions,
        created=record.created,
        stage=Stage(record.stage) if record.stage else None,
        job_id=record.job_id,
        description=record.description,
        config_hash=record.config_hash,
        config=record.config,
        links={"self": url, "yaml": f"{url}&format=yaml"},
        command=command,
    )
