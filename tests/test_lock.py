"""The pinned dependency set: requirements/lock.txt agrees with pyproject.toml, and it is what is
installed, so a green suite here means a green suite on a fresh machine.

The lock is a constraints file (``pip install -c requirements/lock.txt -e ".[dev]"``): pip installs
only what the project needs, at the locked versions. It is universal (every platform and Python the
project supports), so each pin may carry an environment marker.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli where tomllib is missing
    import tomli as tomllib

LOCK = REPO / "requirements" / "lock.txt"
REFRESH = "refresh it with the command in README.md"


def _pins() -> dict[str, Requirement]:
    """The lock's pins that apply to this interpreter and platform, by canonical name."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = req
    return pins


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**default_environment(), "extra": e}) for e in extras or {""})


def _installed_closure(root: str, extras: set[str]) -> dict[str, str]:
    """Every distribution that ``root[extras]`` pulls in, by name, with its installed version."""
    seen: dict[str, str] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if not _applies(req, wanted):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                seen[key] = metadata.version(req.name)
                todo.append((req.name, set(req.extras)))
            elif req.extras:
                todo.append((req.name, set(req.extras)))
    return seen


def test_every_requirement_of_pyproject_admits_its_locked_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = _pins()
    for text in wanted:
        req = Requirement(text)
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name} is in pyproject.toml but not in the lock: {REFRESH}"
        (locked,) = pin.specifier
        assert req.specifier.contains(locked.version, prereleases=True), (
            f"pyproject.toml asks for {req}, the lock pins {locked.version}: {REFRESH}"
        )


def test_what_is_installed_is_what_the_lock_pins():
    """Checked on the installed project's whole requirement tree, dev extra included."""
    pins = _pins()
    drift = []
    for name, version in sorted(_installed_closure("stagetune", {"dev"}).items()):
        pin = pins.get(name)
        if pin is None:
            drift.append(f"{name} {version} (not in the lock)")
        elif not pin.specifier.contains(Version(version), prereleases=True):
            drift.append(f"{name} {version} (lock: {pin.specifier})")
    assert not drift, (
        "installed packages differ from requirements/lock.txt; install with "
        '`pip install -c requirements/lock.txt -e ".[dev]"`: ' + ", ".join(drift)
    )
