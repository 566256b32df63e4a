"""The formats of the job's files for people and spreadsheets: ``trials.csv`` (every variable of
every trial, one row each, typed, and read back typed), ``trials-wide.csv`` (the same, one row per
trial and one column per variable, to compare trials without a pivot) and ``audit.md``.
``tuner._folder`` writes them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stagetune_api import (
    TRIAL_COLUMNS,
    JobResult,
    Search,
    StageResult,
    TrialRecord,
    format_size,
)

_HEAD = ("stage", "search", "trial_id", "status", "node_id", "retries", "seconds", "started")


def _head(r: TrialRecord) -> list[Any]:
    return [
        r.stage.value,
        r.search.value,
        r.trial_id,
        r.status.value,
        r.node_id or "",
        r.retries,
        f"{r.seconds:.3f}",
        f"{r.started:.3f}",
    ]


def _cell(value: Any) -> Any:
    """A value as both CSV forms write it: JSON for lists and mappings, nothing for null."""
    return json.dumps(value) if _type(value) == "json" else "" if value is None else value


def trials_csv(records: list[TrialRecord]) -> str:
    """One row per variable of each trial: stage, search, trial, status, node, retries, seconds
    it ran, when it started, then the variable, its type (int, float, bool, str, null, json)
    and value."""
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*_HEAD, "variable", "type", "value"])
        for r in records:
            head = _head(r)
            for name, value in sorted(r.all_variables().items()):
                writer.writerow([*head, name, _type(value), _cell(value)])
        return f.getvalue()


def trials_wide_csv(records: list[TrialRecord]) -> str:
    """One row per trial: the columns of ``trials.csv``'s head, then one column per variable
    (every variable of any trial, sorted; empty where a trial has none). Values are written as
    in ``trials.csv``; their types are in ``trials.csv``."""
    rows = [(r, r.all_variables()) for r in records]
    names = sorted({name for _, variables in rows for name in variables})
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*_HEAD, *names])
        for r, variables in rows:
            writer.writerow([*_head(r), *(_cell(variables.get(name)) for name in names)])
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
        "int": int,
        "float": float,
        "str": str,
        "null": lambda _: None,
        "bool": lambda v: v == "True",
        "json": json.loads,
    }
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            row["value"] = convert[row["type"]](row["value"])
            row["retries"] = int(row["retries"])
            row["seconds"], row["started"] = float(row["seconds"]), float(row["started"])
            rows.append(row)
    return rows + _pruned_capacities(rows)


def _pruned_capacities(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``pruned.capacity`` rows a job recorded before it counted every pruned model: where
    its stage's policy bounds a score by the parameter count (``Policy.bound_is_capacity``),
    the bound it pruned by is the model's count."""
    from tuner.policies import POLICIES

    trials: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        trials.setdefault((row["stage"], row["search"], row["trial_id"]), {})[row["variable"]] = row
    added = []
    for variables in trials.values():
        bound, policy = variables.get("pruned.bound"), variables.get("stage.policy")
        if bound is None or policy is None or "pruned.capacity" in variables:
            continue
        known = POLICIES.get(str(policy["value"]))
        if known is not None and known.bound_is_capacity and (bound["value"] or 0) > 0:
            added.append({**bound, "variable": "pruned.capacity"})
    return added


def model_words(model: dict[str, Any]) -> str:
    """A model as people name it: ``16 channels x 2 layers, 2 heads, 8 RBF, cutoff 5 Å``."""
    parts = []
    if "hidden_channels" in model:
        parts.append(f"{model['hidden_channels']} channels")
    if "num_layers" in model:
        layers = model["num_layers"]
        parts.append(f"{layers} layer{'' if layers == 1 else 's'}")
    rest = [" x ".join(parts)] if parts else []
    for key, unit in (("num_heads", "heads"), ("num_rbf", "RBF")):
        if key in model:
            rest.append(f"{model[key]} {unit}")
    if model.get("cutoff") is not None:
        rest.append(f"cutoff {model['cutoff']:g} Å")
    return ", ".join(rest)


def _n(value: Any, digits: int = 3) -> str:
    """A measured number rounded for people (``1,938``, ``0.302``, ``1.32e-06``); '' for none."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, int) or abs(value) >= 10**digits:
        return f"{round(value):,}"
    return f"{value:.{digits}g}"


def audit_markdown(result: JobResult, records: list[TrialRecord]) -> str:
    p = result.provenance
    lines = [
        f"# stagetune job {result.job_id}",
        "",
        f"- finished: {p.finished} ({p.elapsed_seconds:.0f} s, {p.device_hours:.4f} device-hours)",
        f"- seed: {p.seed}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in p.versions.items())}",
        "",
    ]
    for stage, r in result.stages.items():
        lines += [f"## {stage.value}", ""]
        lines += _answer(r) if r.feasible else [f"No configuration: {r.reason}", ""]
        ours = [t for t in records if t.stage is stage]
        lines += _fit_table([t for t in ours if t.search is Search.FIT])
        lines += _tune_table([t for t in ours if t.search is Search.TUNE])
    return "\n".join(lines)


def _answer(r: StageResult) -> list[str]:
    p = r.probe
    capacity = f" ({p.capacity:,} parameters)" if p is not None else ""
    lines = [
        f"- model: {model_words(r.model)}{capacity}",
        f"- every knob: {', '.join(f'{k}={v}' for k, v in r.model.items())}",
        f"- batch size: {r.batch_size} ({r.reason})",
        f"- optimizer: {r.optimizer.get('name')} lr {_n(r.optimizer.get('lr'), 4)}; "
        f"scheduler: {r.scheduler.get('name')}",
        f"- configuration hash: `{r.config_hash}` (profile `{r.profile}`)",
    ]
    b = r.batching
    if b is not None and b.max_atoms_per_batch is not None:
        lines.append(
            f"- batches: at most {b.max_atoms_per_batch:,} atoms; on the job's data "
            f"{b.complexes_per_batch or 0:.1f} complexes a batch, "
            f"{b.cycle_minutes_on_data or 0:.2f} min per cycle, "
            f"{_n(b.throughput_on_data or 0)} complexes/s"
        )
    if p is not None:
        peak = format_size(p.peak_bytes) if p.peak_bytes is not None else "?"
        lines.append(
            f"- measured on {r.device.device_model if r.device else '?'}: "
            f"{_n(p.throughput or 0)} complexes/s, {p.cycle_minutes or 0:.2f} min per cycle "
            f"(worst-case complexes), peak {peak} of {format_size(p.limit_bytes)}"
        )
    if r.validation is not None:
        v = r.validation
        lines.append(
            f"- validation: loss {v.val_loss:.4f}, rmse {_n(v.val_rmse, 4)}, after {v.epochs} "
            f"epochs; {v.trials} trials, {v.stopped_early} stopped early by ASHA"
        )
    return [*lines, ""]


def _hash(value: Any) -> str:
    return f"`{value}`" if value else ""


def _table(heading: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    return [
        heading,
        "",
        f"| {' | '.join(columns)} |",
        f"|{'---|' * len(columns)}",
        *(f"| {' | '.join(row)} |" for row in rows),
        "",
    ]


def _written(value: Any, kind: str) -> str:
    """A trial's value in a table, as its column's ``kind`` writes it (``TrialColumn``)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "count" and number:
        return f"{round(value):,}"
    if kind == "bytes" and number:
        return format_size(int(value))
    if kind == "loss" and number:
        return f"{value:.4f}"
    return _n(value)


def _measured(v: dict[str, Any], search: Search) -> list[str]:
    return [_written(v.get(c.variable), c.kind) for c in TRIAL_COLUMNS[search]]


def _fit_table(trials: list[TrialRecord]) -> list[str]:
    """The fit search's trials: each one's model, what the probe measured, rounded."""
    rows = []
    for t in trials:
        v = t.all_variables()
        model = {k.removeprefix("model."): x for k, x in v.items() if k.startswith("model.")}
        why = ", ".join(
            f"{k.removeprefix('pruned_by.')}={x}"
            for k, x in v.items()
            if k.startswith("pruned_by.")
        )
        last = f"dominates {why}, which did not fit" if why else _hash(v.get("probe.config_hash"))
        head = [t.trial_id, t.status.value, (t.node_id or "")[:8], model_words(model)]
        rows.append([*head, *_measured(v, Search.FIT), last])
    headings = [c.heading for c in TRIAL_COLUMNS[Search.FIT]]
    columns = ["trial", "status", "node", "model", *headings, "configuration hash"]
    return _table("### fit search", columns, rows)


def _tune_table(trials: list[TrialRecord]) -> list[str]:
    """The tune search's trials: the hyperparameters tried and the validation figures."""
    rows = []
    for t in trials:
        v = t.all_variables()
        tried = ", ".join(
            f"{k.removeprefix('tune.')}={_n(x)}"
            for k, x in sorted(v.items())
            if k.startswith("tune.")
        )
        head = [t.trial_id, t.status.value, (t.node_id or "")[:8], tried]
        rows.append([*head, *_measured(v, Search.TUNE), _hash(v.get("result.config_hash"))])
    headings = [c.heading for c in TRIAL_COLUMNS[Search.TUNE]]
    columns = ["trial", "status", "node", "hyperparameters", *headings, "configuration hash"]
    return _table("### tune search", columns, rows)
