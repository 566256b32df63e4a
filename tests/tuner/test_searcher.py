"""The fit search's searcher, driven like Tune drives it, without a cluster: TPE proposals,
dominance pruning, no repeats, and a checkpoint that keeps both."""

import itertools

import pytest
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.hyperopt import HyperOptSearch

from stagetune_api import FitReport
from tuner import ProbeSearcher, Stage, dominates

CHANNELS, LAYERS, RBF = [16, 32, 64, 128], [1, 2, 3, 4], [8, 16, 32]
GRID = [
    {"hidden_channels": c, "num_layers": n, "num_rbf": r}
    for c, n, r in itertools.product(CHANNELS, LAYERS, RBF)
]


def memory(knobs):
    """A stand-in for a probe: memory grows with every knob."""
    return knobs["hidden_channels"] * knobs["num_layers"] + knobs["num_rbf"]


def searcher(seed=0):
    space = {k: tune.choice(sorted({g[k] for g in GRID})) for k in GRID[0]}
    inner = HyperOptSearch(
        space=HyperOptSearch.convert_search_space(space),
        metric="score",
        mode="max",
        random_state_seed=seed,
        n_initial_points=4,
    )
    return ProbeSearcher(inner, GRID, "score", fits=lambda r: r["fits"])


def run(s, limit, trials, concurrent=1):
    """Tune's loop: suggest up to ``concurrent`` trials, complete the oldest, repeat."""
    probed, running, n = [], [], 0
    while len(probed) < trials:
        while len(running) < concurrent and n < trials:
            config = s.suggest(f"t{n}")
            n += 1
            if config == Searcher.FINISHED or config is None:
                break
            running.append((f"t{n - 1}", config))
        if not running:
            break
        trial_id, config = running.pop(0)
        fits = memory(config) <= limit
        probed.append((config, fits))
        s.on_trial_complete(trial_id, {"score": memory(config) if fits else 0.0, "fits": fits})
    return probed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dominated_configurations_are_never_probed_and_none_twice(seed):
    s = searcher(seed)
    probed = run(s, limit=200, trials=len(GRID))
    keys = [tuple(sorted(c.items())) for c, _ in probed]
    assert len(keys) == len(set(keys))  # no repeats
    assert all(c in GRID for c, _ in probed)
    for i, (config, _) in enumerate(probed):
        earlier_failures = [c for c, fits in probed[:i] if not fits]
        assert not any(dominates(config, f) for f in earlier_failures), config
    # every point of the space is accounted for: probed, or pruned by a failure it dominates
    failures = [c for c, fits in probed if not fits]
    assert len(probed) + len(s.pruned) == len(GRID)
    for p in s.pruned:
        assert p.failed in failures and dominates(p.knobs, p.failed)
    assert s.pruned  # a space this size with a limit this low prunes something
    assert s.suggest("one-more") == Searcher.FINISHED


def test_a_larger_knob_alone_does_not_prune():
    s = searcher()
    wide = {"hidden_channels": 128, "num_layers": 1, "num_rbf": 8}
    s.pruner.record_failure({"hidden_channels": 64, "num_layers": 2, "num_rbf": 8})
    assert s.pruner.pruned_by(wide) is None
    run(s, limit=0, trials=len(GRID))  # nothing fits
    assert all(dominates(p.knobs, p.failed) for p in s.pruned)


def test_concurrent_trials_get_distinct_configurations():
    s = searcher()
    configs = [s.suggest(f"t{i}") for i in range(6)]
    keys = {tuple(sorted(c.items())) for c in configs}
    assert len(keys) == 6


def test_the_checkpoint_keeps_pruning_and_what_was_probed(tmp_path):
    s = searcher()
    probed = run(s, limit=150, trials=12)
    s.save_to_dir(str(tmp_path), session_str="s1")  # as Tune checkpoints an experiment
    assert len(list(tmp_path.iterdir())) == 1  # one file, nothing left behind
    restored = searcher()
    restored.restore_from_dir(str(tmp_path))
    assert restored.pruner.failed == s.pruner.failed
    assert restored.scores == s.scores
    more = run(restored, limit=150, trials=len(GRID))
    first = {tuple(sorted(c.items())) for c, _ in probed}
    assert not first & {tuple(sorted(c.items())) for c, _ in more}


def test_a_bound_below_the_best_found_skips_the_probe():
    """Production's case: the score of a model that fits is its size, known without a probe."""
    space = {k: tune.choice(sorted({g[k] for g in GRID})) for k in GRID[0]}
    inner = HyperOptSearch(
        space=HyperOptSearch.convert_search_space(space),
        metric="score",
        mode="max",
        random_state_seed=0,
        n_initial_points=4,
    )
    s = ProbeSearcher(inner, GRID, "score", fits=lambda r: r["fits"], bound=memory)
    probed = run(s, limit=200, trials=len(GRID))
    best = max(memory(c) for c in GRID if memory(c) <= 200)
    assert best in [memory(c) for c, fits in probed if fits]  # the answer was probed
    for i, (config, _) in enumerate(probed):
        found = [memory(c) for c, fits in probed[:i] if fits]
        assert not found or memory(config) >= max(found), config  # never a probe below the best
    bounded = [p for p in s.pruned if p.bound is not None]
    assert bounded and all(p.bound < p.best for p in bounded)
    assert len(probed) + len(s.pruned) == len(GRID)


def test_a_configuration_that_crashed_is_not_proposed_again_nor_prunes_others():
    s = searcher()
    first = s.suggest("t0")
    s.on_trial_complete("t0", error=True)
    assert s.pruner.failed == []  # a crash says nothing about memory
    seen = [s.suggest(f"t{i}") for i in range(1, len(GRID))]
    assert first not in seen


def test_production_bound_respects_the_data_cap():
    """Models above the data's parameter cap can score nothing: once a model fits, they are
    not probed, and the best model under the cap still is."""
    from tuner import DataStats, PolicyContext, fit_searcher, load_stages, policy_for

    cap, limit = 150, 400
    stages = load_stages(
        overlays=[{"stages": {"production": {"data_limits": {"params_per_sample": 1.5}}}}]
    )
    ctx = PolicyContext.of(Stage.PRODUCTION, stages, DataStats(training_samples=100))
    s = fit_searcher(policy_for(ctx.spec), ctx, GRID, seed=0, previous=[], capacity=memory)
    probed, n = [], 0
    while True:
        config = s.suggest(f"t{n}")
        if config is None or config == Searcher.FINISHED:
            break
        fits = memory(config) <= limit
        score = memory(config) if fits and memory(config) <= cap else 0.0
        if any(memory(c) <= min(cap, limit) for c in probed):
            assert memory(config) <= cap, config  # something fits: nothing over the cap is probed
        report = FitReport(score=score, fits=fits, feasible=score > 0)  # what a fit trial reports
        s.on_trial_complete(f"t{n}", report.metrics())
        probed.append(config)
        n += 1
    best = max(memory(c) for c in GRID if memory(c) <= min(cap, limit))
    assert best in [memory(c) for c in probed]  # the answer under the cap was probed
    assert all(p.bound == 0.0 or p.bound < p.best for p in s.pruned if p.bound is not None)
