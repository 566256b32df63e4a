"""The job's answer and its files.

``result.json`` is a ``JobResult``; its JSON Schema (``result_schema``) is published as
``docs/result.schema.json``. Beside it, in the job folder: ``profiles/<stage>.yaml`` (what
``stagetune train --profile`` accepts), ``trials.csv`` (every variable of every trial, typed) and
``audit.md`` (for people, with the hash of each configuration).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tuner._stages import Stage


@dataclass(frozen=True)
class TrialRecord:
    """One trial of one search, every variable flat and typed (``trials.csv`` has one row each)."""

    stage: str
    search: str
    trial_id: str
    status: str  # probed, pruned, invalid, error; completed, stopped_early
    variables: dict[str, Any]
    node_id: str | None = None
    retries: int = 0
    seconds: float = 0.0
    started: float = 0.0  # when the trial started (epoch seconds); pruned ones never did


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeFigures(_Record):
    """What the probe measured for the chosen model, on the device named beside it."""

    max_batch_size: int = Field(description="the largest batch that fit (B_max)")
    peak_bytes: int | None = Field(description="peak memory of a step at B_max")
    limit_bytes: int = Field(description="memory_fraction x device memory (or the CPU budget)")
    step_seconds: float | None = Field(
        description="step time at the chosen batch: measured (median) when it is B_max, else "
        "from the probe's step-time model"
    )
    cycle_minutes: float | None = Field(description="cycle_batches x step time")
    throughput: float | None = Field(description="samples per second at the chosen batch")
    capacity: int = Field(description="trainable parameters")
    probe_steps: int = Field(description="real training steps the probe spent")
    sample_atoms: int = Field(description="atoms of each complex of the probe batch")


class ValidationFigures(_Record):
    """The best trial of the tune search: its last validation figures."""

    val_loss: float
    val_rmse: float | None
    val_pearson: float | None
    epochs: int
    trials: int = Field(description="trials of the tune search")
    stopped_early: int = Field(description="trials ASHA stopped early")


class MeasuredOn(_Record):
    device: str | None = Field(description="cpu or cuda:N, as the trial saw it")
    device_model: str | None = Field(description="the GPU's (or CPU's) model name")
    node_id: str | None = Field(description="the Ray node the probe ran on")


class StageResult(_Record):
    feasible: bool
    reason: str = Field(description="why this configuration, or why none")
    model: dict[str, Any] = Field(description="every knob of the model (ModelSpec)")
    batch_size: int | None
    optimizer: dict[str, Any] = Field(description="the optimizer section (configs/optimizer/)")
    scheduler: dict[str, Any] = Field(description="the scheduler section (configs/scheduler/)")
    probe: ProbeFigures | None
    validation: ValidationFigures | None
    device: MeasuredOn | None
    config_hash: str | None = Field(description="SHA-256 of the profile's whole configuration")
    profile: str | None = Field(description="profiles/<stage>.yaml, relative to the job folder")
    probed: int = Field(description="configurations probed by the fit search")
    pruned: int = Field(description="configurations answered without a probe")


class Provenance(_Record):
    versions: dict[str, str]
    seed: int
    spec: dict[str, Any] = Field(description="the job spec, as validated")
    started: str
    finished: str
    elapsed_seconds: float
    device_hours: float = Field(description="trial time x devices held, over every trial")


class JobResult(_Record):
    """``result.json``: the best configuration per stage, the hardware, and provenance."""

    job_id: str
    stages: dict[Stage, StageResult]
    hardware: dict[str, Any] = Field(description="the Ray cluster's nodes and the devices used")
    provenance: Provenance


def result_schema() -> dict[str, Any]:
    schema = JobResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://stagetune.dev/schemas/result.json"
    return schema


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_profile(path: Path, config: dict[str, Any], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile_yaml(config, meta, path.name))


def profile_yaml(config: dict[str, Any], meta: dict[str, Any], filename: str) -> str:
    """A profile as ``stagetune train --profile`` reads it: ``meta``, then the configuration."""
    text = yaml.safe_dump({"meta": meta, **config}, sort_keys=False)
    return f"# stagetune train --profile {filename}\n{text}"


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    """One row per variable of each trial: stage, search, trial, status, node, retries, seconds
    it ran, when it started, then the variable, its type (int, float, bool, str, null) and
    value."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stage", "search", "trial_id", "status", "node_id", "retries",
                         "seconds", "started", "variable", "type", "value"])  # fmt: skip
        for r in records:
            head = [r.stage, r.search, r.trial_id, r.status, r.node_id or "", r.retries,
                    f"{r.seconds:.3f}", f"{r.started:.3f}"]  # fmt: skip
            for name, value in sorted(r.variables.items()):
                kind = _type(value)
                shown = json.dumps(value) if kind == "json" else "" if value is None else value
                writer.writerow([*head, name, kind, shown])


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


def write_audit(path: Path, result: JobResult, records: list[TrialRecord]) -> None:
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
        ours = [t for t in records if t.stage == stage.value]
        lines += ["| search | trial | status | node | variables |", "|---|---|---|---|---|"]
        for t in ours:
            shown = ", ".join(f"{k}={v}" for k, v in t.variables.items() if k.startswith(_AUDITED))
            lines.append(
                f"| {t.search} | {t.trial_id} | {t.status} | {(t.node_id or '')[:8]} | {shown} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))
