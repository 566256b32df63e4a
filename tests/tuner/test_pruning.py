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
        fits=fits, max_batch_size=8 if fits else 0, peak_bytes=1, fixed_bytes=None,
        bytes_per_sample=None, step_seconds=0.1 if fits else None, cycle_minutes=None,
        throughput=None, capacity=1, probe_steps=1, device="cpu", limit_bytes=1,
    )  # fmt: skip


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
    assert all(c.pruned_by == {"hidden_channels": 64, "num_layers": 3}
               for c in candidates if c.probe is None)  # fmt: skip
