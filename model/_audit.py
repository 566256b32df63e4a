"""The audit log: one Markdown entry per training run, enough to find and replay it."""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

from model._config import TrainConfig
from model._report import TrainReport


def append_audit_entry(
    path: Path,
    config: TrainConfig,
    run_dir: Path,
    report: TrainReport | None,
    error: BaseException | None,
) -> None:
    """Append one entry; a lock keeps entries of concurrent runs whole."""
    opt, sched = config.optimizer, config.scheduler
    values = ", ".join(f"{k}={v}" for k, v in sorted(opt.hyperparameters.items()))
    lookahead = (
        f"lookahead alpha={opt.lookahead.alpha} k={opt.lookahead.k}"
        if opt.lookahead.enabled
        else "no lookahead"
    )
    lines = [
        f"## {datetime.now(timezone.utc).isoformat(timespec='seconds')} run {config.digest()[:12]}",
        "",
        f"- optimizer: {opt.name} (torch.optim.{opt.type}) {values}",
        f"- optimizer options: {lookahead}, clip_grad_norm={opt.clip_grad_norm}, "
        f"accumulate_steps={opt.accumulate_steps}, warmup_steps={opt.warmup_steps}, "
        f"auto_param_groups={opt.auto_param_groups}",
        f"- scheduler: {sched.name} ({sched.type}) warmup_steps={sched.warmup_steps}, "
        f"min_lr={sched.min_lr}",
        f"- model: {', '.join(f'{k}={v}' for k, v in config.model.model_dump().items())}",
        f"- data: {config.data.source}, max_atoms={config.data.max_atoms}; "
        f"epochs={config.train.epochs}, batch_size={config.train.batch_size}, "
        f"seed={config.train.seed}",
        f"- config hash: sha256:{config.digest()}",
    ]
    if opt.export_json and report is not None:
        lines.append(f"- replay: `stagetune train --profile {run_dir / 'config.json'}`")
    if report is not None and report.epochs:
        last = report.epochs[-1]
        lines.append(
            f"- result: val_rmse={last.val_rmse:.4f}, val_pearson={last.val_pearson:.3f} after "
            f"{last.epoch} epochs on {report.device} ({report.precision}), {report.seconds:.1f}s"
        )
    if error is not None:
        lines.append(f"- failed: {type(error).__name__}: {error}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("\n".join(lines) + "\n\n")
        handle.flush()
        os.fsync(handle.fileno())
