"""What the command line checks before anything heavy starts (torch, Ray): a job's preset, its
``--spec`` file and the folders it names; a training run's profile and data. Each problem is a
one-line error (``BadRequest``) within a fraction of a second; the whole spec, every
configuration it composes, is then checked by ``tuner.build_job_spec``, still before Ray starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stagetune_api import preset_names, read_job_options

_ROOT = "synthetic, or a PDBbind-style root (a folder of <id>/ folders)"


class BadRequest(ValueError):
    """A flag, file or folder the command cannot use, named with what would be accepted."""


def check_job(given: Mapping[str, Any], spec_file: Path | None) -> None:
    """The options of ``stagetune optimize``: ``given`` flags (None: not given) over those of
    ``spec_file``."""
    options = dict(_spec_options(spec_file)) if spec_file is not None else {}
    options.update({k: v for k, v in given.items() if v is not None})
    preset = options.get("preset")
    if preset is not None and preset not in (known := preset_names()):
        raise BadRequest(f"--preset {preset}: no such preset; accepted: {', '.join(known)}")
    check_data(options.get("data"), "--data")
    check_data(options.get("sample"), "--sample")


def check_run(profile: str | None, data: str | None) -> None:
    """The profile and data of ``stagetune train``."""
    if profile is not None and not Path(profile).expanduser().is_file():
        raise BadRequest(
            f"--profile {profile}: no such file; accepted: a profile YAML file (a job's "
            "profiles/<stage>.yaml, or one saved from the results page)"
        )
    check_data(data, "--data")


def check_data(value: Any, flag: str) -> None:
    """``value`` is ``synthetic`` or a folder holding at least one folder (a complex's)."""
    if value is None or value == "synthetic":
        return
    root = Path(str(value)).expanduser()
    if not root.is_dir():
        raise BadRequest(f"{flag} {value}: no such folder; accepted: {_ROOT}")
    if not any(child.is_dir() for child in root.iterdir()):
        raise BadRequest(f"{flag} {value}: holds no folder of a complex; accepted: {_ROOT}")


def _spec_options(path: Path) -> Mapping[str, Any]:
    try:
        return read_job_options(path)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
