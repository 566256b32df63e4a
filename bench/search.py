"""The fit search's cost: HyperOpt with dominance pruning against the exhaustive grid.

``record`` probes every configuration of a 48-point space for real, on this machine's CPU under
a declared budget, and writes the table (``bench/data/probe_table.json``). ``replay`` then runs
the searches against that table without probing again, for several seeds, and counts the probes
each needs before it has probed the configuration the stage's policy picks from the whole table
(the answer the exhaustive grid, which probes all 48, gives):

- tpe+pruning: ``fit_searcher`` (``ProbeSearcher`` over ``HyperOptSearch``, dominance pruning,
  production's capacity bound, the smallest model first for throughput), one trial at a time, as
  ``optimize`` builds it, without a previous stage's best to start from;
- grid+pruning: every point in lexicographic order, dominated ones skipped (``probe_space``);
- grid: every point probed.

    python bench/search.py record [--budget 48MiB --atoms 40]
    python bench/search.py replay [--seeds 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from model import load_train_config
from tuner import (
    Candidate,
    PolicyContext,
    Probe,
    ProbeResult,
    ProbeSample,
    Stage,
    StagesConfig,
    device_for,
    discover,
    fit_searcher,
    policy_for,
    probe_space,
)

TABLE = Path(__file__).parent / "data" / "probe_table.json"
SPACE = {"hidden_channels": [16, 32, 64, 128], "num_layers": [1, 2, 3, 4], "num_rbf": [8, 16, 32]}
GRID = [dict(zip(SPACE, v, strict=True)) for v in itertools.product(*SPACE.values())]


def stages(seconds_per_step: float) -> StagesConfig:
    """A throughput stage whose time rule binds on this CPU, and production, over SPACE."""
    minutes = 450 * seconds_per_step / 60.0
    space = {k: list(v) for k, v in SPACE.items()}
    return StagesConfig.model_validate({
        "cycle_batches": 450, "memory_fraction": 0.9, "min_batch_size": 1,
        "max_batch_size": 64, "throughput_tie": 0.02,
        "stages": {
            "validation": {"policy": "time_bound_throughput", "target_minutes": minutes,
                           "space": space},
            "production": {"policy": "largest_capacity", "space": space},
        },
    })  # fmt: skip


def record(budget: str, atoms: int) -> None:
    device = device_for(discover(budget), "cpu")
    rows = []
    started = time.time()
    for knobs in GRID:
        config = load_train_config(
            ["model.num_heads=2", "optimizer.log_config=false"]
            + [f"model.{k}={v}" for k, v in knobs.items()]
        )
        sample = ProbeSample.synthetic(atoms, config.model.cutoff, config.model.max_num_neighbors)
        with Probe(config, device, sample) as probe:
            result = probe.find_max_batch(64)
        rows.append({"knobs": knobs, "probe": result.to_json()})
        print(knobs, result.fits, result.max_batch_size, result.step_seconds, flush=True)
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(json.dumps({"budget": budget, "atoms": atoms, "device": device.model,
                                 "seconds": round(time.time() - started), "rows": rows},
                                indent=1) + "\n")  # fmt: skip
    print(f"{len(rows)} configurations probed in {time.time() - started:.0f} s -> {TABLE}")


def replay(seeds: int, seconds_per_step: float) -> None:
    table = json.loads(TABLE.read_text())
    results = {_key(r["knobs"]): ProbeResult.from_json(r["probe"]) for r in table["rows"]}
    config = stages(seconds_per_step)
    print(f"table: {len(results)} configurations, {table['atoms']} atoms, budget "
          f"{table['budget']}, {sum(not r.fits for r in results.values())} do not fit; "
          f"validation allows {seconds_per_step:g} s per step")  # fmt: skip
    print()
    print("| stage | answer | grid: probes | grid+pruning: probes | tpe+pruning: probes to the "
          "answer (median, min-max over seeds) | pruned when found (median) | found within "
          "12 probes | within 16 (the default fit_trials) |")
    print("|---|---|---:|---:|---|---:|---|---|")
    for stage in (Stage.VALIDATION, Stage.PRODUCTION):
        spec = config.stages[stage]
        everything = [Candidate(k, results[_key(k)]) for k in GRID]
        answer = policy_for(spec).choose(everything, PolicyContext.of(stage, config))
        lexicographic = probe_space(spec, lambda k: results[_key(k)])
        walked = sum(c.probe is not None for c in lexicographic)
        needed, pruned = [], []
        for seed in range(seeds):
            n, p = _tpe_probes_to(answer.knobs, stage, config, results, seed)
            needed.append(n)
            pruned.append(p)
        print(
            f"| {stage.value} | {answer.knobs} batch {answer.batch_size} | {len(GRID)} | "
            f"{walked} | {statistics.median(needed):g} ({min(needed)}-{max(needed)}) | "
            f"{statistics.median(pruned):g} | {sum(n <= 12 for n in needed)}/{seeds} | "
            f"{sum(n <= 16 for n in needed)}/{seeds} |"
        )


def _tpe_probes_to(
    target: dict[str, Any],
    stage: Stage,
    config: StagesConfig,
    results: dict[tuple[Any, ...], ProbeResult],
    seed: int,
) -> tuple[int, int]:
    """Probes until ``target`` was probed (one trial at a time) and how many were pruned by
    then; every point is probed or pruned in the end, and ``target`` is never pruned."""
    ctx = PolicyContext.of(stage, config)
    policy = policy_for(ctx.spec)
    searcher = fit_searcher(
        policy, ctx, GRID, seed, [], capacity=lambda k: results[_key(k)].capacity
    )
    probes = 0
    while True:
        knobs = searcher.suggest(f"t{probes}")
        if knobs is None or knobs == Searcher.FINISHED:
            raise AssertionError(f"the search finished without probing {target}")
        probes += 1
        result = results[_key(knobs)]
        searcher.on_trial_complete(
            f"t{probes - 1}",
            {"score": policy.score_of(knobs, result, ctx),
             "fits": result.fits_at(config.min_batch_size)},
        )  # fmt: skip
        if knobs == target:
            return probes, len(searcher.pruned)


def _key(knobs: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(knobs[k] for k in SPACE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("--budget", default="48MiB")
    rec.add_argument("--atoms", type=int, default=40)
    rep = commands.add_parser("replay")
    rep.add_argument("--seeds", type=int, default=10)
    rep.add_argument("--seconds-per-step", type=float, default=0.05)
    args = parser.parse_args()
    if args.command == "record":
        record(args.budget, args.atoms)
    else:
        replay(args.seeds, args.seconds_per_step)


if __name__ == "__main__":
    main()
