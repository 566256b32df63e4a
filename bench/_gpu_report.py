"""``gpu_check.md``: the tables of ``gpu_check.json``, ready for BENCHMARKS.md."""

from __future__ import annotations

from typing import Any


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _state(part: dict[str, Any]) -> str | None:
    for key in ("skipped", "timed_out", "error"):
        if key in part:
            return f"{key.replace('_', ' ')}: {part[key]}"
    return None


def _probe(part: dict[str, Any], limit: int) -> list[str]:
    lines = [
        f"Limit {_mib(limit)} MiB. Predicted: the probe's footprint at its batch (its measured "
        "live peak, what a step adds scaled by the allocator's overhead); measured: an "
        "independent instrument over steady steps of a fresh trainer at that batch (a GPU: "
        "NVML's used memory over its reading before the steps, the allocator's allocated and "
        "reserved peaks beside it; a CPU: the kernel's peak resident set). Error: predicted / "
        "measured - 1.",
        "",
        "| stage | model | batch | probe steps | probe s | live peak MiB | predicted MiB | "
        "measured MiB | instrument | allocated MiB | reserved MiB | error | within limit | "
        "5 % more fits |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in part.get("models", []):
        m = r.get("measured", {})
        above = r.get("above", {})
        lines.append(
            f"| {r['stage']} | {r['model']} | {r.get('batch_size', '-')} | "
            f"{r.get('probe_steps', '-')} | {r.get('probe_seconds', '-')} | "
            f"{_mib(r.get('live_peak_bytes'))} | {_mib(r.get('predicted_peak_bytes'))} | "
            f"{_mib(m.get('footprint_bytes'))} | {m.get('instrument', '-')} | "
            f"{_mib(m.get('allocated_bytes'))} | {_mib(m.get('reserved_bytes'))} | "
            f"{_pct(r.get('peak_error'))} | {r.get('within_limit', '-')} | "
            f"{above.get('fits', '-')} (batch {above.get('batch_size', '-')}) |"
        )
    return lines


def _lightning(part: dict[str, Any]) -> list[str]:
    lines = [
        f'Lightning {part.get("version")}, `Tuner.scale_batch_size(mode="binsearch")`, under '
        "the probe's limit on a step's live peak. Two rows a model: Lightning's default (3 "
        "steps a trial, labelled default) and the rule ours follows (1 step a trial, 2 timed "
        'steps at the answer, counted). "survives": a worst-case step at its batch under the '
        "same limit.",
        "",
        "| stage | model | probe: batch | probe: steps | Lightning run | Lightning: batch | "
        "Lightning: steps | Lightning: s | survives | ours / Lightning, steps |",
        "|---|---|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    runs = (("lightning", "default, 3 steps a trial"), ("lightning_one_step", "1 step a trial"))
    for r in part.get("models", []):
        for key, label in runs:
            lt = r.get(key, {})
            steps = lt.get("steps")
            ratio = f"{r['probe']['steps'] / steps:.2f}" if steps else "-"
            lines.append(
                f"| {r['stage']} | {r['model']} | {r['probe']['batch_size']} | "
                f"{r['probe']['steps']} | {label} | {lt.get('batch_size', '-')} | "
                f"{steps if steps is not None else '-'} | {lt.get('seconds', '-')} | "
                f"{lt.get('survives', '-')} | {ratio} |"
            )
    return lines


def _cycle(p: dict[str, Any]) -> list[str]:
    m = p.get("measured") or {}
    return [
        "| model | batch | steps | predicted s | measured s | error | out of memory | "
        "measured footprint MiB | instrument | predicted footprint MiB | within limit | "
        "predicted cycle min | measured cycle min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|",
        f"| {p.get('model')} | {p.get('batch_size')} | {p.get('steps_done')} of "
        f"{p.get('cycle_batches')} | {_num(p.get('predicted_seconds'))} | "
        f"{_num(p.get('measured_seconds'))} | {_pct(p.get('time_error'))} | "
        f"{p.get('oom_errors')} | {_mib(m.get('footprint_bytes'))} | {m.get('instrument', '-')} | "
        f"{_mib(p.get('predicted_peak_bytes'))} | {p.get('within_limit', '-')} | "
        f"{_num(p.get('predicted_cycle_minutes'))} | {_num(p.get('measured_cycle_minutes'))} |",
    ]


def _oom(p: dict[str, Any]) -> list[str]:
    after = p.get("fitting_step_after", {})
    return [
        f"Cause: {p.get('cause')}.",
        "",
        "| attempts | out-of-memory errors | baseline MiB | after MiB | leaked bytes | "
        "fitting step after |",
        "|---:|---:|---:|---:|---:|---|",
        f"| {p.get('attempts')} | {p.get('oom_errors')} | {_mib(p.get('baseline_bytes'))} | "
        f"{_mib(p.get('after_bytes'))} | {p.get('leaked_bytes')} | {after.get('fits')} |",
    ]


def _precision(p: dict[str, Any]) -> list[str]:
    lines = [
        f"{p.get('model')}.",
        "",
        "| precision | batch | samples/s | step s | peak MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("fp32", "bf16"):
        r = p.get(name, {})
        lines.append(
            f"| {name} | {r.get('batch_size', '-')} | {_num(r.get('throughput'), 4)} | "
            f"{_num(r.get('step_seconds'))} | {_mib(r.get('peak_bytes'))} |"
        )
    if "bf16_speedup" in p:
        lines += [
            "",
            f"bf16 against fp32: {p['bf16_speedup']:.2f}x the throughput, "
            f"{p['bf16_batch_ratio']:.2f}x the batch.",
        ]
    return lines


def _atoms(p: dict[str, Any]) -> list[str]:
    return [
        f"{p.get('model')}: {p.get('batches')} batches of {p.get('complexes')} complexes of "
        f"mixed sizes packed up to {p.get('max_atoms_per_batch')} atoms (fixed batch "
        f"{p.get('fixed_batch')}).",
        "",
        "| complexes a batch | over the limit | largest predicted footprint / limit | mean "
        "predicted footprint / limit | measured over the epoch / limit | instrument |",
        "|---:|---:|---:|---:|---:|---|",
        f"| {_num(p.get('complexes_per_batch'))} | {p.get('over_limit')} | "
        f"{_share(p.get('largest_share'))} | {_share(p.get('mean_share'))} | "
        f"{_share(_measured_share(p))} | {(p.get('measured') or {}).get('instrument', '-')} |",
    ]


def _measured_share(p: dict[str, Any]) -> float | None:
    footprint = (p.get("measured") or {}).get("footprint_bytes")
    limit = p.get("limit_bytes")
    return footprint / limit if footprint and limit else None


def _workers(p: dict[str, Any]) -> list[str]:
    lines = [
        f"{p.get('model')}: {p.get('complexes')} complexes of mixed sizes, each rank's batch "
        f"within {p.get('max_atoms_per_batch')} atoms."
        + (f" {p['note'][0].upper()}{p['note'][1:]}." if p.get("note") else ""),
        "",
        "| workers | complexes/s | step (median) | timed steps | DDP adds to a rank | gradients | "
        "fastest rank's wait, balanced plan | rank by rank |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in p.get("runs", []):
        waits = run.get("waits", {})
        cells = [
            str(run["workers"]),
            f"{run['complexes_per_second']:.1f}",
            f"{_num(run['step_seconds'])} s",
            str(run["timed_steps"]),
            f"{_mib(run['ddp_bytes'])} MiB" if run.get("ddp_bytes") is not None else "-",
            f"{_mib(run['grad_bytes'])} MiB",
            *(
                f"{_num(w['wait_seconds'])} s ({_share(w['share'])})" if w else "-"
                for w in (waits.get("balanced"), waits.get("rank by rank"))
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _repeat(p: dict[str, Any]) -> list[str]:
    blocks = p.get("run_blocks_seconds") or [None, None]
    return [
        f"{p.get('model')}: {p.get('complexes')} complexes of mixed sizes packed to "
        f"{p.get('max_atoms_per_batch')} atoms; five probes in a row, then a run of "
        f"{p.get('run_steps')} steps at that budget.",
        "",
        "| predicted step, each probe (s) | spread | the run's mean step | its ninths | error, "
        "each probe |",
        "|---|---:|---:|---:|---|",
        "| "
        + " / ".join(f"{x:.4f}" for x in p.get("predicted", []))
        + f" | {_share(p.get('spread'))} | {_num(p.get('run_mean_step_seconds'), 4)} s | "
        f"{_num(blocks[0], 4)} to {_num(blocks[1], 4)} s | "
        + " / ".join(_pct(e) for e in p.get("errors", []))
        + " |",
    ]


RENDER = {
    "probe": "Probe fidelity",
    "lightning": "Lightning's BatchSizeFinder, side by side",
    "cycle": "A real cycle",
    "oom": "Out of memory",
    "precision": "Precision",
    "atoms": "Atom budgets",
    "workers": "Data-parallel workers",
    "repeat": "Five probes against a run",
}


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    v = meta["versions"]
    out = [
        f"# GPU check, {meta['date']}",
        "",
        f"`{meta['command']}`: {meta['device']} ({meta['device_model']}), budget "
        f"{_mib(meta['budget_bytes'])} MiB, limit {_mib(meta['limit_bytes'])} MiB; "
        f"{meta['sample']}; torch {v['torch']}, torch_geometric {v['torch_geometric']}, "
        f"Lightning {v.get('lightning') or v.get('pytorch_lightning')}; "
        f"{meta.get('seconds')} s in all.",
    ]
    for name, title in RENDER.items():
        if name not in report:  # not among the parts run (--parts)
            continue
        part = report[name]
        out += ["", f"## {title} ({part.get('seconds', '-')} s)", ""]
        state = _state(part)
        if state and not part.get("models") and name != "cycle":
            out.append(state)
            continue
        if state:
            out += [state, ""]
        if name == "probe":
            out += _probe(part, meta["limit_bytes"])
        elif name == "lightning":
            out += _lightning(part)
        elif name == "cycle" and "steps" in part:
            out += _cycle(part)
        elif name == "oom":
            out += _oom(part)
        elif name == "precision":
            out += _precision(part)
        elif name == "atoms" and "batches" in part:
            out += _atoms(part)
        elif name == "workers" and part.get("runs"):
            out += _workers(part)
        elif name == "repeat" and part.get("errors"):
            out += _repeat(part)
    return "\n".join(out) + "\n"
