"""The fit search's cost: HyperOpt with dominance pruning against the grid and random search.

``record`` probes every configuration of a 48-point space for real, on this machine's CPU under
a declared budget, and writes the table to the path given (``bench/data/probe_table*.json``);
each probe waits for idle cores and is repeated when other work ran beside it.
``replay`` then runs every strategy against one or more such tables without probing again.

The counting rule, one for every strategy: the answer is the configuration the stage's policy
picks from the whole table; a strategy is charged the probes it spends until it first probes
that configuration (the probe of the answer included). A configuration answered without a probe
(pruned, or proposed again) costs nothing. No strategy is charged for the probes it would spend
after the answer; none can tell it has found the answer, so a job spends its whole ``fit_trials``,
and ``replay`` also says whether each strategy probes the answer within the default 16. The
strategies:

- grid, natural order: every point in lexicographic order (hidden_channels, num_layers, num_rbf,
  each ascending: the order ``probe_space`` walks, smallest first);
- grid, reverse order: the same points, largest first;
- grid, random orders: the points in a random order, one order per seed;
- grid+pruning: natural order, dominated points skipped (``probe_space``'s walk);
- random search: points drawn uniformly, one knob at a time; a repeated draw is not probed again,
  so this is uniform sampling without replacement;
- random+pruning: ``ProbeSearcher`` (dominance pruning, production's capacity bound) over random
  proposals that start from the policy's seed points: ``fit_searcher`` with TPE replaced by
  uniform draws;
- tpe+pruning: ``fit_searcher`` (``ProbeSearcher`` over ``HyperOptSearch``) as
  ``stagetune optimize`` builds it, one trial at a time, without a previous stage's best to start
  from.

Seeded strategies are reported as median (min-max), mean over the seeds 0 to ``--seeds`` - 1.

    python bench/search.py record bench/data/probe_table.json --budget 48MiB --atoms 40
    python bench/search.py replay bench/data/probe_table.json [more tables] --seeds 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from model import load_train_config
from tuner import (
    Candidate,
    Device,
    DominancePruner,
    PolicyContext,
    Probe,
    ProbeResult,
    ProbeSample,
    ProbeSearcher,
    Stage,
    StageChoice,
    StagesConfig,
    device_for,
    discover,
    fit_searcher,
    policy_for,
    probe_space,
)

SPACE = {"hidden_channels": [16, 32, 64, 128], "num_layers": [1, 2, 3, 4], "num_rbf": [8, 16, 32]}
GRID = [dict(zip(SPACE, v, strict=True)) for v in itertools.product(*SPACE.values())]
SCORE = "score"
FIT_TRIALS = 16  # optimize's default fit_trials

Results = dict[tuple[Any, ...], ProbeResult]


def stages(seconds_per_step: float) -> StagesConfig:
    """A throughput stage whose time rule binds on this CPU, and production, over SPACE."""
    space = {k: list(v) for k, v in SPACE.items()}
    validation = {
        "policy": "time_bound_throughput",
        "target_minutes": 450 * seconds_per_step / 60.0,
        "space": space,
    }
    return StagesConfig.model_validate(
        {
            "cycle_batches": 450,
            "memory_fraction": 0.9,
            "min_batch_size": 1,
            "max_batch_size": 64,
            "throughput_tie": 0.02,
            "stages": {
                "validation": validation,
                "production": {"policy": "largest_capacity", "space": space},
            },
        }
    )


# --- record ---------------------------------------------------------------------------------


def record(path: Path, budget: str, atoms: int) -> None:
    """Probe every point of GRID for real and write the table to ``path``.

    Other work on the cores would slow the steps the probe times, so each probe waits for idle
    cores and is run again (up to ``RETRIES`` times) when other processes used more than
    ``QUIET_CORES`` cores while it ran; the table keeps what the others used during each probe.
    """
    device = device_for(discover(budget), "cpu")
    rows = []
    started = time.time()
    for knobs in GRID:
        result, others = _quiet_probe(knobs, device, atoms)
        rows.append({"knobs": knobs, "probe": result.to_json(), "others_cores": round(others, 2)})
        print(knobs, result.fits, result.max_batch_size, result.step_seconds, others, flush=True)
    table = {
        "budget": budget,
        "atoms": atoms,
        "device": device.model,
        "recorded": time.strftime("%Y-%m-%d"),
        "seconds": round(time.time() - started),
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(rows)} configurations probed in {time.time() - started:.0f} s -> {path}")


QUIET_CORES = 0.2  # what other processes may use of the cores while a probe runs
RETRIES = 3
WAIT_SECONDS = 300  # the longest wait for idle cores before a probe runs anyway


def _quiet_probe(knobs: dict[str, Any], device: Device, atoms: int) -> tuple[ProbeResult, float]:
    """The probe of ``knobs`` and the cores other processes used while it ran (the quietest of
    up to RETRIES runs)."""
    best: tuple[ProbeResult, float] | None = None
    for _ in range(RETRIES):
        _wait_for_idle()
        before = _cpu_seconds()
        result = _probe(knobs, device, atoms)
        others = _others_cores(before)
        if best is None or others < best[1]:
            best = (result, others)
        if others <= QUIET_CORES:
            break
    assert best is not None
    return best


def _wait_for_idle() -> None:
    deadline = time.time() + WAIT_SECONDS
    while time.time() < deadline:
        before = _cpu_seconds()
        time.sleep(1.0)
        if _others_cores(before) <= QUIET_CORES:
            return


def _cpu_seconds() -> tuple[float, float, float]:
    """Wall clock, the CPU time of every process (``/proc/stat``) and this process's own."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return time.time(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _others_cores(before: tuple[float, float, float]) -> float:
    """Cores that other processes used on average since ``before``."""
    after = _cpu_seconds()
    wall, busy, own = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, (busy - own) / wall)


def _probe(knobs: dict[str, Any], device: Device, atoms: int) -> ProbeResult:
    overrides = [f"model.{k}={v}" for k, v in knobs.items()]
    config = load_train_config(["model.num_heads=2", "optimizer.log_config=false", *overrides])
    sample = ProbeSample.synthetic(atoms, config.model.cutoff, config.model.max_num_neighbors)
    with Probe(config, device, sample) as probe:
        return probe.find_max_batch(64)


# --- the strategies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One stage on one recorded table: what every strategy is asked to find."""

    stage: Stage
    config: StagesConfig
    results: Results
    answer: StageChoice

    @property
    def ctx(self) -> PolicyContext:
        return PolicyContext.of(self.stage, self.config)

    @property
    def target(self) -> dict[str, Any]:
        return self.answer.knobs

    def fits(self, knobs: dict[str, Any]) -> bool:
        return self.results[_key(knobs)].fits_at(self.config.min_batch_size)


def probes_in_order(order: Sequence[dict[str, Any]], target: dict[str, Any]) -> int:
    """Probes of a walk that probes every point of ``order`` until ``target``."""
    return [_key(k) for k in order].index(_key(target)) + 1


def pruned_walk(case: Case) -> int:
    """Probes of the natural-order walk with dominance pruning until the answer; checked against
    the order ``probe_space`` probes in."""
    pruner = DominancePruner()
    probed: list[dict[str, Any]] = []
    for knobs in GRID:
        if pruner.pruned_by(knobs) is not None:
            continue
        probed.append(knobs)
        if not case.fits(knobs):
            pruner.record_failure(knobs)
    walked = probe_space(case.ctx.spec, lambda k: case.results[_key(k)], case.config.min_batch_size)
    assert probed == [c.knobs for c in walked if c.probe is not None], (
        "probe_space walks another way"
    )
    return probes_in_order(probed, case.target)


def shuffled_grid(case: Case, seed: int) -> int:
    order = list(GRID)
    random.Random(seed).shuffle(order)
    return probes_in_order(order, case.target)


def random_search(case: Case, seed: int) -> int:
    """Uniform draws of each knob; a point drawn again is not probed again."""
    rng = random.Random(seed)
    probed: set[tuple[Any, ...]] = set()
    while True:
        knobs = {k: rng.choice(v) for k, v in SPACE.items()}
        if _key(knobs) in probed:
            continue
        probed.add(_key(knobs))
        if knobs == case.target:
            return len(probed)


class UniformSearcher(Searcher):
    """Random proposals over SPACE, after the given seed points; learns nothing."""

    def __init__(self, points: Sequence[dict[str, Any]], seed: int) -> None:
        super().__init__(metric=SCORE, mode="max")
        self.points = list(points)
        self.rng = random.Random(seed)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.points:
            return dict(self.points.pop(0))
        return {k: self.rng.choice(v) for k, v in SPACE.items()}

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        pass


def tpe_pruned(case: Case, seed: int) -> int:
    capacity = _capacity(case.results)
    searcher = fit_searcher(policy_for(case.ctx.spec), case.ctx, GRID, seed, [], capacity)
    return probes_of_searcher(searcher, case)


def random_pruned(case: Case, seed: int) -> int:
    """``fit_searcher``'s wrapper, seed points and bound, with uniform proposals for TPE's."""
    ctx, capacity = case.ctx, _capacity(case.results)
    policy = policy_for(ctx.spec)
    points = policy.seed_points(SPACE, [])

    def bound(knobs: dict[str, Any]) -> float | None:
        return policy.bound(capacity(knobs), ctx)

    inner = UniformSearcher(points, seed)
    searcher = ProbeSearcher(inner, GRID, SCORE, lambda r: bool(r.get("fits")), bound=bound)
    return probes_of_searcher(searcher, case)


def probes_of_searcher(searcher: Searcher, case: Case) -> int:
    """Probes a searcher runs (one trial at a time) until it has probed the answer; the answer
    can be neither pruned nor skipped, so every such search probes it in the end."""
    ctx = case.ctx
    policy = policy_for(ctx.spec)
    probes = 0
    while True:
        probes += 1
        trial = f"t{probes}"
        knobs = searcher.suggest(trial)
        if knobs is None or knobs == Searcher.FINISHED:
            raise AssertionError(f"the search finished without probing {case.target}")
        result = case.results[_key(knobs)]
        score = policy.score_of(knobs, result, ctx)
        searcher.on_trial_complete(trial, {SCORE: score, "fits": case.fits(knobs)})
        if knobs == case.target:
            return probes


@dataclass(frozen=True)
class Strategy:
    name: str
    count: Callable[[Case, int], int]
    seeded: bool


STRATEGIES = (
    Strategy("grid, natural order", lambda c, _: probes_in_order(GRID, c.target), False),
    Strategy("grid, reverse order", lambda c, _: probes_in_order(GRID[::-1], c.target), False),
    Strategy("grid, random orders", shuffled_grid, True),
    Strategy("grid+pruning, natural order", lambda c, _: pruned_walk(c), False),
    Strategy("random search", random_search, True),
    Strategy("random+pruning", random_pruned, True),
    Strategy("tpe+pruning (`fit_searcher`)", tpe_pruned, True),
)


def _capacity(results: Results) -> Callable[[dict[str, Any]], float]:
    return lambda knobs: float(results[_key(knobs)].capacity)


def _key(knobs: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(knobs[k] for k in SPACE)


# --- replay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    name: str
    header: dict[str, Any]
    results: Results


def load_table(path: Path) -> Table:
    data = json.loads(path.read_text())
    results = {_key(r["knobs"]): ProbeResult.from_json(r["probe"]) for r in data["rows"]}
    assert set(results) == {_key(k) for k in GRID}, f"{path} is not a table of SPACE"
    header = {k: v for k, v in data.items() if k != "rows"}
    others = [r["others_cores"] for r in data["rows"] if "others_cores" in r]
    header["others_cores"] = max(others) if others else None
    return Table(path.name, header, results)


def case_of(stage: Stage, config: StagesConfig, results: Results) -> Case:
    everything = [Candidate(k, results[_key(k)]) for k in GRID]
    answer = policy_for(config.stages[stage]).choose(everything, PolicyContext.of(stage, config))
    assert answer.feasible, f"{stage.value}: no answer in the table ({answer.reason})"
    return Case(stage, config, results, answer)


def counts(strategy: Strategy, case: Case, seeds: int) -> list[int]:
    return [strategy.count(case, seed) for seed in range(seeds if strategy.seeded else 1)]


def replay(paths: Sequence[Path], seeds: int, seconds_per_step: float) -> None:
    config = stages(seconds_per_step)
    cases: list[tuple[str, Case]] = []
    for path in paths:
        table = load_table(path)
        print(_describe(table))
        for stage in (Stage.VALIDATION, Stage.PRODUCTION):
            name = f"{table.header['budget']}: {stage.value}"
            cases.append((name, case_of(stage, config, table.results)))
    print(f"validation allows {seconds_per_step:g} s per step; seeds 0-{seeds - 1}")
    found = {s.name: [counts(s, case, seeds) for _, case in cases] for s in STRATEGIES}
    print()
    print(_markdown(cases, found))


def _describe(table: Table) -> str:
    h, results = table.header, table.results
    failing = sum(not r.fits for r in results.values())
    others = h["others_cores"]
    busy = "" if others is None else f"; other processes used at most {others:g} cores in a probe"
    return (
        f"{table.name}: {len(results)} configurations, {h['atoms']} atoms, budget "
        f"{h['budget']}, {failing} do not fit, recorded {h.get('recorded', '?')} in "
        f"{h['seconds']} s on {h['device']}{busy}"
    )


def _markdown(cases: list[tuple[str, Case]], found: dict[str, list[list[int]]]) -> str:
    head = "| strategy | " + " | ".join(name for name, _ in cases) + " |"
    rule = "|---|" + "---|" * len(cases)
    answers = " | ".join(_answer(case) for _, case in cases)
    lines = [head, rule, f"| answer (its place in the natural order) | {answers} |"]
    lines += [
        f"| {name} | " + " | ".join(_summary(c) for c in runs) + " |"
        for name, runs in found.items()
    ]
    lines += ["", f"Answer probed within {FIT_TRIALS} probes (the default `fit_trials`):", ""]
    lines += [head, rule]
    lines += [
        f"| {name} | " + " | ".join(_within(c) for c in runs) + " |" for name, runs in found.items()
    ]
    return "\n".join(lines)


def _answer(case: Case) -> str:
    k = case.target
    place = probes_in_order(GRID, k)
    return (
        f"hidden {k['hidden_channels']}, layers {k['num_layers']}, rbf {k['num_rbf']}, batch "
        f"{case.answer.batch_size} ({place} of {len(GRID)})"
    )


def _summary(found: list[int]) -> str:
    if len(found) == 1:
        return str(found[0])
    median = statistics.median(found)
    return f"{median:g} ({min(found)}-{max(found)}), mean {statistics.mean(found):.1f}"


def _within(found: list[int]) -> str:
    if len(found) == 1:
        return "yes" if found[0] <= FIT_TRIALS else "no"
    return f"{sum(n <= FIT_TRIALS for n in found)} of {len(found)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="probe every point and write the table")
    rec.add_argument("table", type=Path, help="where to write the table (JSON)")
    rec.add_argument("--budget", default="48MiB")
    rec.add_argument("--atoms", type=int, default=40)
    rep = commands.add_parser("replay", help="count each strategy's probes on recorded tables")
    rep.add_argument("tables", type=Path, nargs="+", help="tables written by record")
    rep.add_argument("--seeds", type=int, default=20)
    rep.add_argument("--seconds-per-step", type=float, default=0.05)
    args = parser.parse_args()
    if args.command == "record":
        record(args.table, args.budget, args.atoms)
    else:
        replay(args.tables, args.seeds, args.seconds_per_step)


if __name__ == "__main__":
    main()
