"""Each policy picks the right configuration from tables of probe results with known answers."""

from __future__ import annotations

import pytest

from tuner import (
    Candidate,
    DataStats,
    ProbeResult,
    Stage,
    TimeModel,
    choose,
    load_stages,
)

STAGES = load_stages()  # prototyping: 20 + 20 minutes; validation: 90 + 20; 450 steps a cycle
PROTO_STEP = 40 * 60 / 450  # 5.33 s per step allowed


def probe(capacity, max_batch, fixed_s=0.1, per_sample_s=0.01, peak=1 << 30, atoms=600):
    """A probe result as the probe reports it: the step time at B_max is measured."""
    if max_batch == 0:
        return ProbeResult(
            fits=False,
            max_batch_size=0,
            peak_bytes=peak,
            fixed_bytes=None,
            bytes_per_sample=None,
            step_seconds=None,
            cycle_minutes=None,
            throughput=None,
            capacity=capacity,
            probe_steps=2,
            device="cuda:0",
            limit_bytes=72 << 30,
            sample_atoms=atoms,
        )
    model = TimeModel(fixed_s, per_sample_s)
    t = model.step_seconds(max_batch)
    return ProbeResult(
        fits=True,
        max_batch_size=max_batch,
        peak_bytes=peak,
        fixed_bytes=1 << 28,
        bytes_per_sample=1 << 20,
        step_seconds=t,
        cycle_minutes=450 * t / 60,
        throughput=max_batch / t,
        capacity=capacity,
        probe_steps=7,
        device="cuda:0",
        limit_bytes=72 << 30,
        sample_atoms=atoms,
        time_model=model,
    )


def cand(name, result):
    return Candidate({"name": name}, result)


def test_memory_bound_highest_throughput_wins():
    table = [
        cand("small", probe(1_000_000, 64, 0.05, 0.02)),  # 64 / 1.33 s = 48 samples/s
        cand("large", probe(4_000_000, 16, 0.10, 0.08)),  # 16 / 1.38 s = 11.6 samples/s
    ]
    choice = choose(Stage.PROTOTYPING, STAGES, table)
    assert choice.feasible and choice.knobs == {"name": "small"} and choice.batch_size == 64
    assert choice.cycle_minutes == pytest.approx(450 * (0.05 + 0.02 * 64) / 60)


def test_time_bound_batch_is_the_largest_within_the_cycle_budget():
    # fits up to 512, but t(B) = 0.1 + 0.05 B: the cycle allows (5.333 - 0.1) / 0.05 = 104
    table = [cand("m", probe(2_000_000, 512, 0.1, 0.05))]
    choice = choose(Stage.PROTOTYPING, STAGES, table)
    assert choice.batch_size == 104
    assert choice.cycle_minutes <= 40.0
    assert choice.step_seconds == pytest.approx(0.1 + 0.05 * 104)
    # validation allows 110 minutes: (14.667 - 0.1) / 0.05 = 291
    assert choose(Stage.VALIDATION, STAGES, table).batch_size == 291


def test_time_bound_can_turn_the_ranking_around():
    # the fast-to-fit model is slow per sample: under the time rule the other one wins
    table = [
        cand("wide", probe(3_000_000, 400, 0.2, 0.10)),  # time allows 51: 51 / 5.3 = 9.6/s
        cand("lean", probe(1_000_000, 200, 0.2, 0.02)),  # 200 / 4.2 s = 47.6/s
    ]
    assert choose(Stage.PROTOTYPING, STAGES, table).knobs == {"name": "lean"}


def test_throughputs_within_two_percent_prefer_the_larger_capacity():
    table = [
        cand("fast", probe(1_000_000, 100, 0.0, 0.0100)),  # 100 samples/s
        cand("big", probe(5_000_000, 100, 0.0, 0.0101)),  # 99.0 samples/s: within 2 %
        cand("bigger-slow", probe(9_000_000, 100, 0.0, 0.0110)),  # 90.9: outside
    ]
    choice = choose(Stage.PROTOTYPING, STAGES, table)
    assert choice.knobs == {"name": "big"} and choice.capacity == 5_000_000


def test_outside_two_percent_the_higher_throughput_wins():
    table = [
        cand("fast", probe(1_000_000, 100, 0.0, 0.0100)),
        cand("big", probe(5_000_000, 100, 0.0, 0.0105)),  # 95.2: 4.8 % slower
    ]
    assert choose(Stage.PROTOTYPING, STAGES, table).knobs == {"name": "fast"}


def test_nothing_fast_enough_names_the_smallest_configuration_tried():
    table = [
        cand("a", probe(2_000_000, 8, fixed_s=6.0, peak=3 << 30)),
        cand("b", probe(1_000_000, 8, fixed_s=7.0, peak=2 << 30)),
    ]
    choice = choose(Stage.PROTOTYPING, STAGES, table)
    assert not choice.feasible
    # the time rule failed, not the memory: the answer says which, and how far off it is
    assert choice.reason.startswith("no answer: the time rule fails")
    assert "nothing fits" not in choice.reason
    assert "completes 450 steps in 40 minutes" in choice.reason
    assert "the fastest, {'name': 'a'} (2,000,000 parameters), takes 45.1 minutes" in choice.reason


def test_nothing_fits_in_memory_names_the_memory_it_needed():
    table = [
        cand("a", probe(3_000_000, 0, peak=90 << 30)),
        cand("b", probe(2_000_000, 0, peak=80 << 30)),
    ]
    for stage in Stage:
        choice = choose(stage, STAGES, table)
        assert not choice.feasible
        assert "fits in memory" in choice.reason
        assert "{'name': 'b'}" in choice.reason and "80.00 GiB" in choice.reason
        assert "72.00 GiB" in choice.reason


def test_pruned_candidates_are_never_chosen():
    table = [Candidate({"name": "x"}, None, pruned_by={"name": "y"}), cand("ok", probe(1, 4))]
    assert choose(Stage.PROTOTYPING, STAGES, table).knobs == {"name": "ok"}


def test_production_takes_the_largest_model_then_its_largest_batch():
    table = [
        cand("s", probe(1_000_000, 256)),
        cand("l", probe(8_000_000, 24, 1.0, 0.5)),  # slow: production has no time rule
        cand("xl", probe(20_000_000, 0)),
    ]
    choice = choose(Stage.PRODUCTION, STAGES, table)
    assert choice.knobs == {"name": "l"} and choice.batch_size == 24
    assert choice.step_seconds == pytest.approx(1.0 + 0.5 * 24)


def test_production_equal_capacity_prefers_the_larger_batch():
    table = [cand("a", probe(8_000_000, 24)), cand("b", probe(8_000_000, 32))]
    assert choose(Stage.PRODUCTION, STAGES, table).knobs == {"name": "b"}


def test_production_respects_params_per_sample():
    stages = STAGES.model_copy(deep=True)
    spec = stages.stages[Stage.PRODUCTION]
    limited = spec.model_copy(
        update={"data_limits": spec.data_limits.model_copy(update={"params_per_sample": 100.0})}
    )
    stages = stages.model_copy(update={"stages": {**stages.stages, Stage.PRODUCTION: limited}})
    table = [cand("s", probe(1_000_000, 256)), cand("l", probe(8_000_000, 24))]
    data = DataStats(training_samples=50_000)  # at most 5,000,000 parameters
    assert choose(Stage.PRODUCTION, stages, table, data).knobs == {"name": "s"}
    tiny = DataStats(training_samples=100)
    choice = choose(Stage.PRODUCTION, stages, table, tiny)
    assert not choice.feasible and "more than 10,000 parameters" in choice.reason
    assert "data limit (params_per_sample)" in choice.reason


def test_production_below_its_largest_batch_still_has_a_cycle_time():
    stages = STAGES.model_copy(update={"max_batch_size": 16})
    choice = choose(Stage.PRODUCTION, stages, [cand("s", probe(1_000_000, 256, 0.2, 0.01))])
    assert choice.batch_size == 16
    assert choice.step_seconds == pytest.approx(0.2 + 0.01 * 16)
    assert choice.cycle_minutes == pytest.approx(450 * choice.step_seconds / 60)


def test_data_stats_from_atom_counts():
    counts = list(range(101, 201))  # 100 complexes of 101 to 200 atoms
    assert DataStats.from_atom_counts(counts, 100).atoms_needed == 200
    assert DataStats.from_atom_counts(counts, 95).atoms_needed == 195
    assert DataStats.from_atom_counts(counts, 95).training_samples == 100


def test_production_needs_a_probe_sample_that_covers_the_data():
    table = [cand("s", probe(1_000_000, 256, atoms=600))]
    choice = choose(Stage.PRODUCTION, STAGES, table, DataStats(atoms_needed=812))
    assert not choice.feasible and "--max-atoms 812" in choice.reason
    # the data limit failed while the memory held: the answer does not blame the memory
    assert choice.reason.startswith("no answer: the data limit (max_atoms) fails")
    assert "nothing fits" not in choice.reason
    assert "1 configuration(s) fit in memory" in choice.reason
    assert choose(Stage.PRODUCTION, STAGES, table, DataStats(atoms_needed=600)).feasible


def with_data(result, step_s, per_batch, budget):
    """``result`` with an atom budget and its figures on the job's data."""
    import dataclasses

    from tuner import DataFigures

    figures = DataFigures(
        complexes=100,
        atoms_mean=300.0,
        atoms_max=600,
        complexes_per_batch=per_batch,
        step_seconds=step_s,
        cycle_minutes=450 * step_s / 60,
        throughput=per_batch / step_s,
        timed_steps=3,
    )
    return dataclasses.replace(result, max_atoms_per_batch=budget, data=figures)


def test_the_time_rule_judges_the_datas_batches_when_they_were_measured():
    # worst case: 32 complexes take 0.1 + 0.2 * 32 = 6.5 s a step, over prototyping's 5.33 s;
    # the data's batches at the budget take 4 s: the whole budget keeps the cycle
    slow = with_data(probe(1_000_000, 32, 0.1, 0.2), step_s=4.0, per_batch=40.0, budget=19_200)
    choice = choose(Stage.PROTOTYPING, STAGES, [cand("m", slow)])
    assert choice.feasible and choice.on_data is not None
    assert choice.on_data.max_atoms_per_batch == 19_200
    assert choice.on_data.cycle_minutes == pytest.approx(450 * 4.0 / 60)
    assert choice.on_data.throughput == pytest.approx(10.0)
    assert "on the job's data" in choice.reason


def test_a_data_cycle_over_the_budget_shrinks_the_atom_budget_to_fit():
    # 10 s a step on the data, 5.33 s allowed: the part above the fixed 0.1 s scales with atoms
    slow = with_data(probe(1_000_000, 32, 0.1, 0.2), step_s=10.0, per_batch=40.0, budget=19_200)
    choice = choose(Stage.PROTOTYPING, STAGES, [cand("m", slow)])
    expected = int(19_200 * (PROTO_STEP - 0.1) / (10.0 - 0.1))
    assert choice.feasible and choice.on_data.max_atoms_per_batch == expected
    assert choice.on_data.cycle_minutes <= 40.0 + 1e-9
    too_slow = with_data(probe(1_000_000, 32, 6.0, 0.2), step_s=60.0, per_batch=40.0, budget=19_200)
    assert not choose(Stage.PROTOTYPING, STAGES, [cand("m", too_slow)]).feasible


def test_throughput_stages_rank_by_complexes_per_second_on_the_data():
    # on the worst case "a" is faster; on the data "b" packs more complexes a second
    a = with_data(probe(1_000_000, 64, 0.05, 0.02), step_s=1.0, per_batch=20.0, budget=38_400)
    b = with_data(probe(2_000_000, 32, 0.05, 0.04), step_s=1.0, per_batch=30.0, budget=19_200)
    choice = choose(Stage.PROTOTYPING, STAGES, [cand("a", a), cand("b", b)])
    assert choice.knobs == {"name": "b"} and choice.on_data.throughput == pytest.approx(30.0)


def test_production_reports_its_largest_atom_budget():
    table = [cand("s", with_data(probe(1_000_000, 8), step_s=2.0, per_batch=12.0, budget=5_000))]
    choice = choose(Stage.PRODUCTION, STAGES, table)
    assert choice.feasible and choice.batch_size == 8
    assert choice.on_data.max_atoms_per_batch == 5_000
