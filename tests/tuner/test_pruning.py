"""Dominance pruning skips configurations larger in every knob than a failure, and only those."""

from __future__ import annotations

from tuner import DominancePruner, ProbeResult, StageSpec, dominates, probe_space


def test_dominates_needs_every_knob_at_least_as_large():
    assert dominates({"h": 64, "l": 4}, {"h": 64, "l": 4})
    assert dominates({"h": 128, "l": 4}, {"h": 64, "l": 4})
    assert not dominates({"h": 128, "l": 2}, {"h": 64, "l": 4})  # one larger knob alone
    assert not dominates({"h": 32, "l": 8}, {"h": 64, "l": 4})
    assert not dominates({}, {"h": 1})


def test_pruner_keeps_the_minimal_failures():
    pruner = DominancePruner()
    pruner.record_failure({"h": 128, "l": 4})
    pruner.record_failure({"h": 64, "l": 4})  # smaller: replaces the first
    pruner.record_failure({"h": 256, "l": 8})  # dominated: adds nothing
    assert pruner.failed == [{"h": 64, "l": 4}]
    assert pruner.pruned_by({"h": 64, "l": 6}) == {"h": 64, "l": 4}
    assert pruner.pruned_by({"h": 32, "l": 6}) is None


def result(fits):
    return ProbeResult(
        fits=fits,
        max_batch_size=8 if fits else 0,
        peak_bytes=1,
        fixed_bytes=None,
        bytes_per_sample=None,
        step_seconds=0.1 if fits else None,
        cycle_minutes=None,
        throughput=None,
        capacity=1,
        probe_steps=1,
        device="cpu",
        limit_bytes=1,
    )


def test_probe_space_skips_dominated_configurations_and_only_those():
    spec = StageSpec(
        policy="largest_capacity",
        space={"hidden_channels": [32, 64, 128], "num_layers": {"min": 2, "max": 4, "step": 1}},
    )
    # memory grows with both knobs; (64, 3) is the first that does not fit
    fits = {(h, n): h * n < 192 for h in (32, 64, 128) for n in (2, 3, 4)}
    probed = []

    def probe_one(knobs):
        key = (knobs["hidden_channels"], knobs["num_layers"])
        probed.append(key)
        return result(fits[key])

    candidates = probe_space(spec, probe_one)
    assert len(candidates) == 9
    pruned = {
        (c.knobs["hidden_channels"], c.knobs["num_layers"]) for c in candidates if c.probe is None
    }
    # (64, 3) failed: (64, 4), (128, 3) and (128, 4) dominate it. (128, 2) has one larger knob
    # and one smaller, so it is probed (and fails on its own).
    assert pruned == {(64, 4), (128, 3), (128, 4)}
    assert (128, 2) in probed and len(probed) == 6
    assert all(
        c.pruned_by == {"hidden_channels": 64, "num_layers": 3}
        for c in candidates
        if c.probe is None
    )


def test_real_probes_skip_what_dominates_a_real_failure():
    """A tiny space probed for real on the CPU, then the production answer."""
    from model import load_train_config
    from tuner import Probe, ProbeSample, Stage, choose, device_for, discover, load_stages

    device = device_for(discover("7.8MiB"), "cpu")  # limit 7.0 MiB at memory_fraction 0.9
    sample = ProbeSample.synthetic(60)
    spec = StageSpec(
        policy="largest_capacity",
        space={"hidden_channels": [16, 32, 64], "num_layers": [1, 2, 3]},
    )
    probed = []

    def probe_one(knobs):
        probed.append((knobs["hidden_channels"], knobs["num_layers"]))
        overrides = [f"model.{k}={v}" for k, v in knobs.items()]
        config = load_train_config(
            [*overrides, "model.num_heads=2", "model.num_rbf=8", "optimizer.log_config=false"]
        )
        with Probe(config, device, sample, timed_steps=1) as probe:
            return probe.find_max_batch()

    candidates = probe_space(spec, probe_one)
    by_knobs = {(c.knobs["hidden_channels"], c.knobs["num_layers"]): c for c in candidates}
    # batch 1 needs about 7.7 MiB at (32, 2) and 7.9 MiB at (64, 1): both fail
    assert not by_knobs[(32, 2)].probe.fits and not by_knobs[(64, 1)].probe.fits
    assert {k for k, c in by_knobs.items() if c.probe is None} == {(32, 3), (64, 2), (64, 3)}
    assert len(probed) == 6
    choice = choose(Stage.PRODUCTION, load_stages(), candidates)
    fitting = [c for c in candidates if c.probe is not None and c.probe.fits]
    assert choice.feasible
    assert choice.capacity == max(c.probe.capacity for c in fitting)
    assert choice.batch_size == by_knobs[tuple(choice.knobs.values())].probe.max_batch_size
