"""The probe on CPU with a small budget: right answers, few steps, memory given back."""

from __future__ import annotations

import json

import pytest
import torch

from model import live_bytes, load_train_config
from tuner import Probe, ProbeSample, device_for, discover

from ..conftest import run_cli

SIZES = {
    "small": [
        "model.hidden_channels=16",
        "model.num_layers=2",
        "model.num_heads=2",
        "model.num_rbf=8",
    ],
    "medium": [
        "model.hidden_channels=32",
        "model.num_layers=2",
        "model.num_heads=4",
        "model.num_rbf=16",
    ],
    "deep": [
        "model.hidden_channels=16",
        "model.num_layers=4",
        "model.num_heads=2",
        "model.num_rbf=8",
    ],
}


def config(size: str):
    return load_train_config([*SIZES[size], "optimizer.log_config=false"])


def cpu(budget: str):
    return device_for(discover(budget), "cpu")


def brute_force(size: str, budget: str, atoms: int) -> int:
    """The true largest batch: every batch size measured, one step each, until one fails."""
    with Probe(config(size), cpu(budget), ProbeSample.synthetic(atoms), timed_steps=0) as probe:
        largest = 0
        for b in range(1, 500):
            if not probe.measure(b).fits:
                return largest
            largest = b
    raise AssertionError("the budget never ran out")


@pytest.mark.parametrize(
    ("size", "budget", "atoms"),
    [("small", "64MiB", 60), ("medium", "96MiB", 60), ("deep", "160MiB", 80)],
)
def test_largest_batch_is_within_5_percent_of_brute_force_and_never_above(size, budget, atoms):
    truth = brute_force(size, budget, atoms)
    assert truth >= 5
    with Probe(config(size), cpu(budget), ProbeSample.synthetic(atoms)) as probe:
        result = probe.find_max_batch()
    assert result.fits
    assert result.max_batch_size <= truth
    assert result.max_batch_size >= 0.95 * truth
    assert result.peak_bytes <= result.limit_bytes
    # power of two then bisect with 3 steps a trial would spend 3 * (2 log2(truth) + 1)
    assert result.probe_steps <= 8
    assert result.cycle_minutes == pytest.approx(450 * result.step_seconds / 60)


@pytest.mark.parametrize(
    ("size", "budget", "atoms"), [("small", "64MiB", 60), ("deep", "160MiB", 80)]
)
def test_the_atom_budget_fits_on_mixed_sizes_and_a_tenth_more_does_not(size, budget, atoms):
    with Probe(config(size), cpu(budget), ProbeSample.synthetic(atoms)) as probe:
        result = probe.find_max_batch()
        assert result.fits and result.max_atoms_per_batch is not None
        # at least the atoms of the fixed-count answer, measured on worst-case complexes
        assert result.max_atoms_per_batch >= result.max_batch_size * atoms
        assert result.atom_peak_bytes <= result.limit_bytes
        assert result.probe_steps <= 9
        packed = probe.sample.packed(result.max_atoms_per_batch)
        assert len({c.num_nodes for c in packed.to_data_list()}) >= 3  # mixed sizes
        assert packed.num_nodes <= result.max_atoms_per_batch
        assert probe.measure_batch(packed, timed_steps=0).fits
        over = probe.sample.packed(int(result.max_atoms_per_batch * 1.1))
        assert not probe.measure_batch(over, timed_steps=0).fits


def test_accumulation_makes_an_optimizer_step_several_micro_batches():
    plain = config("small")
    accumulated = load_train_config(
        [*SIZES["small"], "optimizer.log_config=false", "optimizer.accumulate_steps=4"]
    )
    results = []
    for cfg in (plain, accumulated):
        with Probe(cfg, cpu("64MiB"), ProbeSample.synthetic(60)) as probe:
            results.append(probe.find_max_batch())
    one, four = results
    assert one.max_batch_size == four.max_batch_size  # memory is that of one micro-batch
    # a cycle of 450 optimizer steps is 4 x 450 micro-batches, each timed as measured (the
    # measured times themselves vary with the machine's load, so they are not compared)
    for result, micro in ((one, 1), (four, 4)):
        final = next(m for m in result.measurements if m.batch_size == result.max_batch_size)
        assert result.step_seconds == pytest.approx(micro * final.median_seconds)
        assert result.cycle_minutes == pytest.approx(450 * result.step_seconds / 60)
    assert four.capacity == one.capacity


def test_peak_memory_is_linear_in_the_batch_for_the_worst_case_sample():
    with Probe(config("small"), cpu("1GiB"), ProbeSample.synthetic(60), timed_steps=0) as probe:
        peaks = [probe.measure(b).peak_bytes for b in (1, 2, 4, 8)]
    per_sample = (peaks[3] - peaks[0]) / 7
    for b, peak in zip((1, 2, 4, 8), peaks, strict=True):
        assert peak == pytest.approx(peaks[0] + per_sample * (b - 1), rel=0.02)


def test_a_step_over_the_limit_does_not_fit_and_says_why():
    with Probe(config("small"), cpu("64MiB"), ProbeSample.synthetic(60)) as probe:
        m = probe.measure(200)
    assert (m.fits, m.oom) == (False, False)
    assert m.peak_bytes > probe.limit_bytes and m.step_seconds == ()


def test_nothing_fits_when_batch_one_is_over_the_limit():
    with Probe(config("medium"), cpu("1MiB"), ProbeSample.synthetic(60)) as probe:
        result = probe.find_max_batch()
    assert (result.fits, result.max_batch_size) == (False, 0)
    assert result.peak_bytes > result.limit_bytes


def force_oom(probe: Probe, nbytes: int = 64 << 20) -> None:
    """Make every forward pass allocate ``nbytes`` and then run out of memory."""

    def hook(module, args):
        held = torch.ones(nbytes // 4)  # alive in this frame when the error is raised
        raise torch.OutOfMemoryError(f"forced: {held.numel()} floats held")

    probe.trainer.model.register_forward_pre_hook(hook)


def test_twenty_out_of_memory_probes_in_a_row_leave_memory_at_its_baseline():
    sample = ProbeSample.synthetic(60)
    cfg, device = config("small"), cpu("1GiB")
    with Probe(cfg, device, sample) as warm:  # one-time allocations of torch itself
        warm.measure(2)
    baseline = live_bytes()
    for _ in range(20):
        with Probe(cfg, device, sample) as probe:
            force_oom(probe)
            m = probe.measure(4)
            assert (m.fits, m.oom, m.peak_bytes) == (False, True, None)
    assert abs(live_bytes() - baseline) < 2 << 20  # 20 x 64 MiB would have leaked 1.25 GiB


def test_out_of_memory_is_survived_within_one_probe():
    with Probe(config("small"), cpu("1GiB"), ProbeSample.synthetic(60)) as probe:
        assert probe.measure(2).fits
        after_first = live_bytes()
        handle = probe.trainer.model.register_forward_pre_hook(
            lambda m, a: (_ for _ in ()).throw(torch.OutOfMemoryError("forced"))
        )
        for _ in range(20):
            assert probe.measure(8).oom
        assert abs(live_bytes() - after_first) < 2 << 20
        handle.remove()
        assert probe.measure(2).fits  # and it goes on measuring


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler\.step\(\)`:UserWarning")
def test_out_of_memory_inside_the_optimizer_step_of_an_fp16_run_is_survived():
    """After unscale_ and clipping, with gradients allocated: the hardest place to fail."""
    cfg = load_train_config([*SIZES["small"], "optimizer.log_config=false", "train.precision=fp16"])
    with Probe(cfg, cpu("1GiB"), ProbeSample.synthetic(60)) as probe:
        assert probe.trainer.scaler.is_enabled()
        # a first step at batch 4 leaves one-time allocations behind (about 20 MiB here),
        # out of memory or not: take the baseline after one that fits
        assert probe.measure(4).fits
        baseline = live_bytes()
        fail = [True]

        def hook(optimizer, args, kwargs):
            if fail[0]:
                held = torch.ones(16 << 20)  # 64 MiB alive in this frame
                raise torch.OutOfMemoryError(f"forced in optimizer.step ({held.numel()})")

        handle = probe.trainer.optimizer.register_step_pre_hook(hook)
        for _ in range(5):
            assert probe.measure(4).oom
            assert all(p.grad is None for p in probe.trainer.model.parameters())
        assert abs(live_bytes() - baseline) < 2 << 20
        fail[0] = False
        assert probe.measure(4).fits  # the scaler was not left mid-step
        handle.remove()


def test_running_out_of_memory_above_a_batch_is_found_by_halving_not_stepping():
    """A device whose allocator fails above 40 complexes long before the declared limit."""
    with Probe(config("small"), cpu("4GiB"), ProbeSample.synthetic(60)) as probe:

        def hook(module, args):
            if int(args[2].max()) + 1 > 40:
                raise torch.OutOfMemoryError("forced above 40")

        probe.trainer.model.register_forward_pre_hook(hook)
        result = probe.find_max_batch()
    assert result.fits and 38 <= result.max_batch_size <= 40
    assert result.probe_steps <= 16


def test_errors_that_are_not_out_of_memory_propagate():
    with Probe(config("small"), cpu("1GiB"), ProbeSample.synthetic(60)) as probe:
        probe.trainer.model.register_forward_pre_hook(
            lambda m, a: (_ for _ in ()).throw(ValueError("a real bug"))
        )
        with pytest.raises(ValueError, match="a real bug"):
            probe.measure(2)


def test_a_real_complex_as_the_probe_sample(pdbbind_mini):
    sample = ProbeSample.from_folder(pdbbind_mini / "1xjd", max_atoms=200)
    assert sample.atoms == 200
    with Probe(config("small"), cpu("128MiB"), sample) as probe:
        assert probe.find_max_batch().fits


@pytest.mark.slow
def test_cli_probe_json(tmp_path):
    result = run_cli(
        "probe",
        *SIZES["small"],
        "--max-atoms",
        "60",
        "--device",
        "cpu",
        "--memory-budget",
        "64MiB",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    keys = {
        "fits",
        "max_batch_size",
        "peak_bytes",
        "fixed_bytes",
        "bytes_per_sample",
        "step_seconds",
        "cycle_minutes",
        "throughput",
        "capacity",
        "probe_steps",
        "device",
    }
    assert keys <= set(out)
    assert out["fits"] and out["device"] == "cpu" and out["peak_bytes"] <= 0.9 * 64 * 2**20
    log = (tmp_path / "runs" / "probe.log").read_text()
    assert "INFO" in log and "probing on cpu" in log


@pytest.mark.slow
def test_cli_probe_on_real_data_gives_the_atom_budget_and_the_datas_cycle(tmp_path, pdbbind_mini):
    result = run_cli(
        "probe",
        *SIZES["small"],
        f"data.cache_dir={tmp_path / 'cache'}",
        "--max-atoms",
        "600",
        "--device",
        "cpu",
        "--memory-budget",
        "256MiB",
        "--data",
        str(pdbbind_mini),
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["max_atoms_per_batch"] >= out["max_batch_size"] * 600
    assert {"limit_bytes", "probe_steps"} <= set(out)
    data = out["data"]
    assert set(data) >= {
        "complexes",
        "atoms_mean",
        "atoms_max",
        "complexes_per_batch",
        "step_seconds",
        "cycle_minutes",
        "throughput",
    }
    assert data["atoms_max"] <= 600 and data["complexes"] >= 10
    # real complexes are smaller than the worst case: a batch at the budget holds more of them
    assert data["complexes_per_batch"] > out["max_batch_size"]
    assert data["cycle_minutes"] == pytest.approx(450 * data["step_seconds"] / 60)
    assert data["timed_steps"] == 10
    # their footprint at the budget: fewer edges than the worst case's, which the limit bounds
    assert 0 < data["peak_bytes"] <= out["atom_peak_bytes"] <= out["limit_bytes"]


@pytest.mark.slow
def test_cli_probe_one_batch_size(tmp_path, pdbbind_mini):
    result = run_cli(
        "probe",
        *SIZES["small"],
        "--sample",
        str(pdbbind_mini / "5mnn"),
        "--max-atoms",
        "100",
        "--device",
        "cpu",
        "--memory-budget",
        "256MiB",
        "--batch-size",
        "3",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {
        "batch_size",
        "fits",
        "oom",
        "peak_bytes",
        "step_seconds",
        "step_times",
        "atoms",
    }
    assert out["batch_size"] == 3 and out["fits"] and out["step_seconds"] > 0


@pytest.mark.slow
def test_cli_probe_bad_input_is_named(tmp_path):
    result = run_cli("probe", "--memory-budget", "lots", cwd=tmp_path)
    assert result.returncode == 2 and "'lots'" in result.stderr and "GiB" in result.stderr
    result = run_cli("probe", "--device", "cuda:99", "--memory-budget", "1GiB", cwd=tmp_path)
    assert result.returncode == 2 and "cuda:99" in result.stderr
    result = run_cli("probe", "--batch-size", "0", cwd=tmp_path)
    assert result.returncode == 2 and "0 must be at least 1" in result.stderr


KERNEL_FOOTPRINT = """
import ctypes, ctypes.util, gc, json, sys
from pathlib import Path
import torch
from model import Trainer, held_bytes, load_train_config
from tuner import ProbeSample

def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(x for x in lines if x.startswith(field)).split()[1]) * 1024

overrides, atoms, batch_size, steps = json.loads(sys.argv[1])
config = load_train_config(overrides)
trainer = Trainer(config, torch.device("cpu"), 450)
batch = ProbeSample.synthetic(atoms).batch(batch_size)
trainer.train_step(batch)  # the optimizer state, and torch's lazy set-up
held = held_bytes(trainer.model, {trainer.optimizer}, None)
gc.collect()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
for _ in range(steps):
    trainer.train_step(batch)
print(json.dumps({"footprint": held + status("VmHWM") - base}))
"""


@pytest.mark.slow
def test_a_real_run_at_the_answer_stays_under_the_predicted_footprint_by_the_kernels_count():
    """Another process trains the answer for 40 steps; the kernel's count of its footprint (peak
    resident set) is under the probe's limit, within 10 % of its prediction, and above the live
    peak alone: the heap's overhead is real, and the prediction accounts for it. (The kernel's
    count of the same steps moves by a few per cent from run to run, BENCHMARKS.md: once it
    was 1.8 % above the prediction, so the prediction is not held to be a bound.)"""
    import subprocess
    import sys

    overrides = [*SIZES["medium"], "optimizer.log_config=false"]
    with Probe(config("medium"), cpu("192MiB"), ProbeSample.synthetic(60)) as probe:
        result = probe.find_max_batch()
    assert result.fits and result.heap_overhead > 1
    job = json.dumps([overrides, 60, result.max_batch_size, 40])
    done = subprocess.run(
        [sys.executable, "-c", KERNEL_FOOTPRINT, job], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    footprint = json.loads(done.stdout.splitlines()[-1])["footprint"]
    assert result.live_peak_bytes < footprint <= result.limit_bytes
    assert result.peak_bytes is not None and result.peak_bytes <= result.limit_bytes
    assert abs(footprint / result.peak_bytes - 1) <= 0.10, (footprint, result.peak_bytes)


def test_a_real_complex_cropped_small_packs_without_cropping_below_its_ligand(pdbbind_mini):
    """1xjd's ligand has 35 atoms: a batch packed from it at 150 atoms holds no complex cropped
    below its ligand, and fills the budget but for less than one smallest complex."""
    sample = ProbeSample.from_folder(pdbbind_mini / "1xjd", 150)
    assert sample.smallest == 36
    batch = sample.packed(1000)
    sizes = [int(c.num_nodes) for c in batch.to_data_list()]
    assert min(sizes) >= 36 and len(set(sizes)) >= 3
    assert 1000 - sample.smallest < sum(sizes) <= 1000
