"""Ray for a job: the cluster it runs on, one trial's resources on it, and what its nodes are."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from model import StagetuneError
from stagetune_api import JobSpec, Stage, StageResult
from tuner._job import trial_bundle

log = logging.getLogger(__name__)


class WrongCluster(StagetuneError):
    """The cluster at the job's address is not the one it was sent to: its session differs."""


@contextmanager
def connected(
    address: str | None, verbose: bool = False, session: str | None = None
) -> Iterator[None]:
    """Ray for the job: the cluster this process is connected to, the one at ``address``, or a
    new local instance (``"local"``: never a cluster some earlier ``ray start`` left behind).
    With ``session`` (the service passes its head's), the cluster joined must be that Ray
    session, or ``WrongCluster`` is raised before anything runs on it: another Ray may have
    taken the address of a head that died.

    Unless ``verbose``, the workers' own output (the profiler's lines, library warnings) stays
    in Ray's worker logs instead of being forwarded to this process's terminal, and the notice
    that a new local instance uses token authentication is not shown (the instance makes its
    own token and ends with the job)."""
    if ray.is_initialized():
        _check_session(address, session)
        yield
        return
    notice = logging.getLogger("ray._private.authentication")
    level = notice.level
    if not verbose and address is None:
        notice.setLevel(logging.ERROR)
    if address is None:
        private_token()
    try:
        ray.init(
            address=address or "local",
            dashboard_host="127.0.0.1",
            configure_logging=False,
            log_to_driver=verbose,
        )
    finally:
        notice.setLevel(level)
    try:
        _check_session(address, session)
        yield
    finally:
        ray.shutdown()


def _check_session(address: str | None, session: str | None) -> None:
    joined = ray.get_runtime_context().get_session_name()
    if session is not None and joined != session:
        raise WrongCluster(
            f"the Ray cluster at {address} is session {joined}, not {session}, the one this job "
            "was submitted to (its head was replaced, and another Ray took its address): the "
            "job was not run; submit it again"
        )


def private_token() -> Path | None:
    """The token file a new local Ray instance authenticates with, readable by its owner only.

    Ray itself writes ``~/.ray/auth_token`` with the process's umask (0644 as a rule), and the
    token grants the cluster. So unless token authentication is off (``RAY_AUTH_MODE=disabled``)
    or the token is given in the environment (``RAY_AUTH_TOKEN``), the file Ray reads
    (``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``) is made here first, mode 0600 in a
    folder of mode 0700; one that exists readable by others is made private, with a warning.
    The file's path, or None when there is none to make.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" or os.environ.get(
        "RAY_AUTH_TOKEN"
    ):
        return None
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    path = path.expanduser()
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    try:
        made = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for part, private in ((path, 0o600), (path.parent, 0o700)):
            mode = stat.S_IMODE(part.stat().st_mode)
            if mode & 0o077:
                log.warning("%s was readable by others (mode %o): made %o", part, mode, private)
                part.chmod(mode & private)
        return path
    with os.fdopen(made, "w") as file:
        file.write(secrets.token_hex(32))
    return path


def trial_resources(spec: JobSpec) -> dict[str, float]:
    """One trial's bundle, checked against the live nodes (``tuner._job.trial_bundle``)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if spec.gpus_per_trial > 0 and not any(n.get("GPU", 0.0) > 0 for n in nodes):
        log.info("no GPU in the cluster: trials probe and train on CPUs")
    return trial_bundle(spec, nodes)


def cluster_hardware(answers: dict[Stage, StageResult]) -> dict[str, Any]:
    """The cluster's live nodes and the devices the answers were measured on."""
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n["Resources"]
        nodes.append(
            {
                "node_id": n["NodeID"],
                "address": n.get("NodeManagerAddress"),
                "cpus": res.get("CPU", 0.0),
                "gpus": res.get("GPU", 0.0),
                "accelerator_types": sorted(
                    k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")
                ),
                "memory_bytes": int(res.get("memory", 0)),
            }
        )
    devices = sorted(
        {
            a.device.device_model
            for a in answers.values()
            if a.device is not None and a.device.device_model
        }
    )
    return {"nodes": nodes, "devices_measured": devices}
