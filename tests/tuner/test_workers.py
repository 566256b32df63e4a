"""The production answer on a cluster whose node declares two GPUs: two data-parallel workers, with
the step at two workers measured by a short distributed probe on Ray Train (here on the CPU with
gloo: the GPUs are declared, not visible), each GPU's budget with what DDP adds to it, and a
profile that trains on them."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from stagetune_api import ProbeResult, Stage, Workers
from tuner import build_job_spec, optimize
from tuner._fit import FitOutcome
from tuner._folder import JobFolder
from tuner._workers import GpuMemory, production_workers, stage_workers
from tuner.policies import Candidate, StageChoice
from tuner.policies._base import OnData

from .conftest import local_cluster

MIB = 2**20


def _probe(**changes: object) -> ProbeResult:
    """A probe's answer at an atom budget of 1,000 atoms: a footprint of 300 MiB there, 100
    live bytes an atom (150 as a footprint), a limit of 400 MiB."""
    figures: dict[str, object] = {
        "fits": True,
        "max_batch_size": 8,
        "peak_bytes": 280 * MIB,
        "fixed_bytes": 100 * MIB,
        "bytes_per_sample": 10 * MIB,
        "step_seconds": 0.5,
        "cycle_minutes": 3.75,
        "throughput": 16.0,
        "capacity": 10_000,
        "probe_steps": 6,
        "device": "cpu",
        "limit_bytes": 400 * MIB,
        "max_atoms_per_batch": 1000,
        "bytes_per_atom": 100,
        "atom_peak_bytes": 300 * MIB,
        "heap_overhead": 1.5,
        "held_bytes": 50 * MIB,
    }
    return ProbeResult(**(figures | changes))  # type: ignore[arg-type]


def test_what_ddp_adds_within_the_limit_keeps_the_budget():
    memory = GpuMemory.of(_probe(), 1000, 8)
    assert memory is not None and memory.atoms and memory.units == 1000
    assert memory.under_ddp(10 * MIB) == (1000, 315 * MIB)  # 1.5 x 10 MiB on the heap


def test_what_ddp_adds_past_the_limit_lowers_the_budget_to_the_most_atoms_within_it():
    memory = GpuMemory.of(_probe(limit_bytes=300 * MIB + 10_000), 1000, 8)
    assert memory is not None
    units, peak = memory.under_ddp(20_000)  # 1.5 x 20,000 = 30,000 bytes: 20,000 too many
    assert units == 1000 - math.ceil(20_000 / 150) and units == 866
    assert peak <= memory.limit_bytes < peak + 150  # one atom more would pass the limit


def test_the_memory_at_a_smaller_budget_or_a_fixed_batch_is_on_the_probes_line():
    fewer = GpuMemory.of(_probe(), 600, 8)
    assert fewer is not None and fewer.peak_bytes == 300 * MIB - 400 * 150
    fixed = GpuMemory.of(_probe(), None, 6)  # no atom budget: complexes, at 1.5 x 10 MiB each
    assert fixed is not None and not fixed.atoms
    assert (fixed.units, fixed.peak_bytes, fixed.bytes_per_unit) == (6, 250 * MIB, 15 * MIB)
    assert GpuMemory.of(_probe(bytes_per_atom=None), 1000, 8) is None  # an old result


def test_the_workers_line_says_what_each_gpu_holds_and_what_ddp_adds():
    workers = Workers(
        count=2,
        reason="a node has 2 GPUs",
        gpus_per_node=2,
        atoms_per_worker=1000,
        step_seconds=0.5,
        cycle_minutes=3.75,
        throughput=32.0,
        atom_imbalance=0.01,
        timed_steps=8,
        device="cuda",
        ddp_bytes=10 * MIB,
        peak_bytes=315 * MIB,
        limit_bytes=400 * MIB,
    )
    said = "; per GPU 315 MiB of 400 MiB, with the 10.0 MiB DDP adds to a step"
    assert workers.words().endswith(said)
    assert "per GPU" not in workers.model_copy(update={"ddp_bytes": None}).words()  # an old one


@pytest.fixture(scope="module")
def cluster():  # a job and Ray Train's workers on a local Ray: the slow tests
    with local_cluster({"num_cpus": 2, "num_gpus": 2}) as c:
        yield c


@pytest.mark.slow
def test_a_node_of_two_gpus_gives_production_two_workers_and_their_measured_cycle(
    cluster, tmp_path
):
    spec = build_job_spec(
        {
            "preset": "quick",
            "storage": str(tmp_path),
            "stages": ["production"],
            "tune": False,
            "fit_trials": 2,
        }
    )
    result = optimize(spec)
    answer = result.stages[Stage.PRODUCTION]
    assert answer.feasible and answer.workers is not None
    workers = answer.workers
    assert workers.count == 2 and workers.gpus_per_node == 2 and workers.device == "cpu"
    assert workers.timed_steps == 8 and workers.step_seconds is not None
    assert workers.cycle_minutes == pytest.approx(450 * workers.step_seconds / 60)
    assert workers.atom_imbalance is not None and 0.0 <= workers.atom_imbalance < 1.0
    # what DDP adds to a GPU was measured, and each GPU's budget holds with it
    probe = answer.probe
    assert probe is not None and workers.limit_bytes == probe.limit_bytes
    assert workers.ddp_bytes is not None and workers.ddp_bytes > 0
    assert workers.peak_bytes is not None and workers.peak_bytes <= workers.limit_bytes
    budget = answer.batching.max_atoms_per_batch
    assert workers.atoms_per_worker is not None and budget is not None
    assert workers.atoms_per_worker <= budget
    profile = yaml.safe_load((spec.job_dir / "profiles" / "production.yaml").read_text())
    assert profile["train"]["workers"] == 2
    assert profile["train"]["max_atoms_per_batch"] == workers.atoms_per_worker
    assert "2 workers, one GPU each" in profile["meta"]["workers"]
    assert "MiB DDP adds to a step" in profile["meta"]["workers"]  # what each GPU holds, said
    # resumed, the job reads the probe back instead of running it again
    again = optimize(spec)
    assert again.stages[Stage.PRODUCTION].workers == workers


@pytest.mark.slow
def test_a_budget_that_ddp_would_push_past_the_limit_is_lowered_and_timed_lowered(
    cluster, tiny_config, tmp_path
):
    config = tiny_config("train.max_atoms_per_batch=400")
    # a limit the one-GPU footprint just reaches: whatever DDP adds, the budget comes down, by
    # an atom for each 100,000 bytes
    tight = GpuMemory(400, True, 300 * MIB, 100_000.0, 300 * MIB, 1.0)
    workers = production_workers(config, False, 450, tmp_path, tight)
    assert workers.count == 2 and workers.ddp_bytes is not None and workers.ddp_bytes > 0
    assert workers.atoms_per_worker == 400 - math.ceil(workers.ddp_bytes / 100_000) < 400
    assert workers.peak_bytes is not None and workers.peak_bytes <= 300 * MIB
    timed = json.loads((tmp_path / "workers-probe.json").read_text())
    assert max(timed["fullest"]) <= workers.atoms_per_worker  # the steps ran at the lowered one
    assert f"lowered from 400 to {workers.atoms_per_worker} atoms" in workers.reason


@pytest.mark.slow
def test_a_failed_distributed_probe_leaves_one_worker_saying_why_and_is_tried_again(
    cluster, tiny_config, tmp_path
):
    config = tiny_config("train.max_atoms_per_batch=400")
    knobs = {"hidden_channels": 16, "num_layers": 2, "num_rbf": 8}
    # a one-GPU footprint 1 GiB over its limit: no batch is left for the workers
    probe = _probe(max_atoms_per_batch=400, limit_bytes=MIB, atom_peak_bytes=MIB + 2**30)
    fit = FitOutcome([Candidate(knobs, probe)], {})
    choice = StageChoice(
        Stage.PRODUCTION, True, knobs, batch_size=8, on_data=OnData(400, 9.0, 0.5, 3.75, 18.0)
    )
    folder = JobFolder(tmp_path / "job")
    workers = stage_workers(folder, Stage.PRODUCTION, choice, fit, config, 450)
    assert workers.count == 1 and workers.step_seconds is None
    assert workers.reason.startswith("the distributed probe failed (")
    assert "no batch fits the limit" in workers.reason
    assert not folder.workers(Stage.PRODUCTION).exists()  # not kept: run again, it probes again
