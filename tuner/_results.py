"""The formats of the job's files for people and spreadsheets: ``trials.csv`` (every variable of
every trial, typed, and read back typed) and ``audit.md``. ``tuner._folder`` writes them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stagetune_api import JobResult, TrialRecord


def trials_csv(records: list[TrialRecord]) -> str:
    """One row per variable of each trial: stage, search, trial, status, node, retries, seconds
    it ran, when it started, then the variable, its type (int, float, bool, str, null, json)
    and value."""
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stage", "search", "trial_id", "status", "node_id", "retries",
                         "seconds", "started", "variable", "type", "value"])  # fmt: skip
        for r in records:
            head = [r.stage.value, r.search.value, r.trial_id, r.status.value, r.node_id or "",
                    r.retries, f"{r.seconds:.3f}", f"{r.started:.3f}"]  # fmt: skip
            for name, value in sorted(r.variables.items()):
                kind = _type(value)
                shown = json.dumps(value) if kind == "json" else "" if value is None else value
                writer.writerow([*head, name, kind, shown])
        return f.getvalue()


def _type(value: Any) -> str:
    if value is None:
        return "null"
    for t in (bool, int, float, str):
        if isinstance(value, t):
            return t.__name__
    return "json"


def read_trials_csv(path: Path) -> list[dict[str, Any]]:
    """``trials.csv`` back into typed rows."""
    convert: dict[str, Callable[[str], Any]] = {
        "int": int, "float": float, "str": str, "null": lambda _: None,
        "bool": lambda v: v == "True", "json": json.loads,
    }  # fmt: skip
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            row["value"] = convert[row["type"]](row["value"])
            row["retries"] = int(row["retries"])
            row["seconds"], row["started"] = float(row["seconds"]), float(row["started"])
            rows.append(row)
    return rows


_AUDITED = ("tune.", "probe.max_batch", "probe.config_hash", "result.val", "result.config_hash")


def audit_markdown(result: JobResult, records: list[TrialRecord]) -> str:
    lines = [f"# stagetune job {result.job_id}", "",
             f"- finished: {result.provenance.finished} ({result.provenance.elapsed_seconds:.0f} s,"
             f" {result.provenance.device_hours:.4f} device-hours)",
             f"- seed: {result.provenance.seed}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in result.provenance.versions.items())}",
             ""]  # fmt: skip
    for stage, r in result.stages.items():
        lines += [f"## {stage.value}", ""]
        if not r.feasible:
            lines += [f"No configuration: {r.reason}", ""]
        else:
            p = r.probe
            lines += [
                f"- model: {r.model}",
                f"- batch size: {r.batch_size} ({r.reason})",
                f"- optimizer: {r.optimizer.get('name')} lr {r.optimizer.get('lr')}; "
                f"scheduler: {r.scheduler.get('name')}",
                f"- configuration hash: `{r.config_hash}` (profile `{r.profile}`)",
            ]
            b = r.batching
            if b is not None and b.max_atoms_per_batch is not None:
                lines.append(
                    f"- batches: at most {b.max_atoms_per_batch:,} atoms; on the job's data "
                    f"{b.complexes_per_batch or 0:.1f} complexes a batch, "
                    f"{b.cycle_minutes_on_data or 0:.1f} min per cycle, "
                    f"{b.throughput_on_data or 0:.1f} complexes/s"
                )
            if p is not None:
                lines.append(
                    f"- measured on {r.device.device_model if r.device else '?'}: "
                    f"{p.throughput or 0:.1f} samples/s, {p.cycle_minutes or 0:.1f} min per "
                    f"cycle, peak {p.peak_bytes} of {p.limit_bytes} bytes"
                )
            if r.validation is not None:
                v = r.validation
                lines.append(
                    f"- validation: loss {v.val_loss:.4f}, rmse {v.val_rmse}, after {v.epochs} "
                    f"epochs; {v.trials} trials, {v.stopped_early} stopped early by ASHA"
                )
            lines.append("")
        ours = [t for t in records if t.stage is stage]
        lines += ["| search | trial | status | node | variables |", "|---|---|---|---|---|"]
        for t in ours:
            shown = ", ".join(f"{k}={v}" for k, v in t.variables.items() if k.startswith(_AUDITED))
            node = (t.node_id or "")[:8]
            lines.append(
                f"| {t.search.value} | {t.trial_id} | {t.status.value} | {node} | {shown} |"
            )
        lines.append("")
    return "\n".join(lines)
