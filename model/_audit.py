"""The trail a training run leaves: one Markdown entry per run in the audit log, and its exported
configuration, enough to find and replay it."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from model._config import TrainConfig
from stagetune_api import RunFiles, TrainRunReport


class RunStopped(Exception):
    """Raised by a run's ``on_epoch`` callback to end the run before its last epoch (a scheduler
    such as ASHA decided so). ``run_training`` writes no audit entry for it: whoever stopped the
    run records it (``append_audit_entry`` with a note), as only it knows why."""


def export_path(config: TrainConfig, run_dir: Path) -> Path | None:
    """Where ``optimizer.export_json`` puts the run's configuration: ``config.json`` in the run
    folder (``true``), the file it names (a path ending in ``.json``), ``<hash[:12]>.json`` in
    the folder it names (any other path), or nowhere (``false``)."""
    export = config.optimizer.export_json
    if export is False:
        return None
    if export is True:
        return run_dir / RunFiles.CONFIG
    path = Path(export).expanduser()
    return path if path.suffix == ".json" else path / f"{config.digest()[:12]}.json"


def export_config(config: TrainConfig, run_dir: Path) -> Path | None:
    """Write the configuration where ``export_path`` says; ``stagetune train --profile`` replays
    it. Returns the file, or None when the run exports nothing."""
    path = export_path(config, run_dir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return path


def append_audit_entry(
    path: Path,
    config: TrainConfig,
    run_dir: Path,
    report: TrainRunReport | None,
    error: BaseException | None,
    note: str | None = None,
) -> None:
    """Append one entry; a lock keeps entries of concurrent runs whole. The configuration's hash
    is in it when ``optimizer.hash_to_debuglog``; ``note`` is one more line (say, why a run of
    a sweep stopped early). A run ended by ``RunStopped`` gets none here (see there)."""
    if isinstance(error, RunStopped):
        return
    opt, sched = config.optimizer, config.scheduler
    values = ", ".join(f"{k}={v}" for k, v in sorted(opt.hyperparameters.items()))
    lookahead = (
        f"lookahead alpha={opt.lookahead.alpha} k={opt.lookahead.k}"
        if opt.lookahead.enabled
        else "no lookahead"
    )
    groups = opt.model_dump(mode="json")["auto_param_groups"]
    lines = [
        f"## {datetime.now(timezone.utc).isoformat(timespec='seconds')} run {run_dir.name}",
        "",
        f"- optimizer: {opt.name} (torch.optim.{opt.type}) {values}",
        f"- optimizer options: {lookahead}, clip_grad_norm={opt.clip_grad_norm}, "
        f"accumulate_steps={opt.accumulate_steps}, warmup_steps={opt.warmup_steps}, "
        f"auto_param_groups={groups}",
        f"- scheduler: {sched.name} ({sched.type}) warmup_steps={sched.warmup_steps}, "
        f"min_lr={sched.min_lr}",
        f"- model: {', '.join(f'{k}={v}' for k, v in config.model.model_dump().items())}",
        f"- data: {config.data.source}, max_atoms={config.data.max_atoms}; "
        f"epochs={config.train.epochs}, batch_size={config.train.batch_size}, "
        f"seed={config.train.seed}",
    ]
    if opt.hash_to_debuglog:
        lines.append(f"- config hash: sha256:{config.digest()}")
    exported = export_path(config, run_dir)
    if exported is not None and error is None and exported.is_file():
        lines.append(f"- replay: `stagetune train --profile {exported}`")
    if report is not None and report.epochs:
        last = report.epochs[-1]
        lines.append(
            f"- result: val_rmse={last.val_rmse:.4f}, val_pearson={last.val_pearson:.3f} after "
            f"{last.epoch} epochs on {report.device} ({report.precision}), {report.seconds:.1f}s"
        )
    if note is not None:
        lines.append(f"- {note}")
    if error is not None:
        lines.append(f"- failed: {type(error).__name__}: {error}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("\n".join(lines) + "\n\n")
        handle.flush()
        os.fsync(handle.fileno())
