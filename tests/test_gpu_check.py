"""bench/gpu_check.py, the check a session lent a GPU runs in one call, run here on the CPU so it
cannot rot between GPU sessions: as on the GPU machine, with Ray, HyperOpt, gemmi and RDKit
unimportable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tuner import Stage, load_stages

pytestmark = pytest.mark.slow  # runs the GPU check, a training run among its parts

MISSING_ON_THE_GPU_MACHINE = ("ray", "hyperopt", "gemmi", "rdkit", "fastapi", "uvicorn")

RUN_WITHOUT = """
import runpy, sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {missing!r}:
            raise ImportError(name + " is not installed on the GPU machine")
sys.meta_path.insert(0, Missing())
sys.argv = ["bench/gpu_check.py", *sys.argv[1:]]
runpy.run_path("bench/gpu_check.py", run_name="__main__")
"""


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    script = RUN_WITHOUT.format(missing=MISSING_ON_THE_GPU_MACHINE)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "--out",
            str(out),
            "--device",
            "cpu",
            "--memory-budget",
            "512MiB",
            "--quick",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_every_part_reports_its_figures_or_why_not(check):
    report, markdown = check
    parts = ("probe", "lightning", "cycle", "oom", "precision", "atoms", "workers", "repeat")
    assert set(report) == {"meta", *parts}
    for part in parts:
        assert not {"error", "timed_out", "skipped"} & set(report[part]), report[part]
    assert report["meta"]["limit_bytes"] == int(512 * 2**20 * load_stages().memory_fraction)
    for title in ("Probe fidelity", "Lightning's BatchSizeFinder", "A real cycle", "Out of memory"):
        assert f"## {title}" in markdown


def test_the_kernel_counts_the_probe_batch_under_the_limit_and_near_the_prediction(check):
    """The footprint of steady steps at the probe's batch in a fresh process, read by the kernel
    (not the probe's profiler), is above the live peak, under the limit, and near the probe's
    prediction, which covers a whole cycle's heap growth (20 steps grow less: the prediction
    stays above). One step at 5 % more does not fit."""
    report, _ = check
    limit = report["meta"]["limit_bytes"]
    models = report["probe"]["models"]
    assert [m["stage"] for m in models] == ["prototyping", "validation", "production"]
    for m in models:
        assert m["fits"] and m["batch_size"] >= 1
        assert m["probe_steps"] <= 8
        measured = m["measured"]
        assert measured["instrument"] == "kernel peak RSS"
        assert m["live_peak_bytes"] < measured["footprint_bytes"] <= limit
        assert m["within_limit"] is True
        assert -0.05 < m["peak_error"] < 0.2
        assert m["above"]["fits"] is False


def test_lightning_searches_the_same_models_under_the_same_limit(check):
    report, _ = check
    probe = {m["stage"]: m for m in report["probe"]["models"]}
    for row in report["lightning"]["models"]:
        assert row["probe"]["batch_size"] == probe[row["stage"]]["batch_size"]
        for key in ("lightning", "lightning_one_step"):
            found = row[key]
            assert found["batch_size"] >= 1
            # its margin leaves it at or below the largest batch that fits, which is ours
            assert found["batch_size"] <= row["probe"]["batch_size"]
            assert found["survives"] is True


def test_a_cycle_trains_at_the_probes_batch_under_the_limit(check):
    """The cycle's steps run in a fresh process, counted by the kernel."""
    cycle = check[0]["cycle"]
    assert cycle["steps_done"] == cycle["steps"] > 0 and cycle["oom_errors"] == 0
    assert cycle["batch_size"] == check[0]["probe"]["models"][0]["batch_size"]
    assert cycle["measured"]["instrument"] == "kernel peak RSS"
    footprint = cycle["measured"]["footprint_bytes"]
    assert cycle["predicted_peak_bytes"] / 2 < footprint <= cycle["limit_bytes"]
    assert cycle["within_limit"] is True
    assert cycle["measured_seconds"] > 0 and cycle["predicted_seconds"] > 0


def test_twenty_out_of_memory_errors_leave_memory_at_its_baseline(check):
    oom = check[0]["oom"]
    assert oom["oom_errors"] == oom["attempts"] == 20
    assert abs(oom["leaked_bytes"]) < 2**20
    assert oom["fitting_step_after"]["fits"] is True


def test_an_epoch_at_the_atom_budget_stays_under_the_limit(check):
    atoms = check[0]["atoms"]
    assert atoms["batches"] >= 2 and atoms["over_limit"] == 0
    assert 0 < atoms["largest_share"] <= 1
    assert atoms["measured"]["footprint_bytes"] <= atoms["limit_bytes"]
    assert atoms["largest_batch"] > atoms["fixed_batch"]  # smaller complexes: more a batch


def test_workers_train_at_the_atom_budget_and_say_what_ddp_adds_and_who_waits(check):
    """On a CPU, 1 and 2 gloo processes (the GPU machine: as many workers as it has GPUs, or
    one and why): both counts train, two workers measure what DDP adds to a rank (at least a
    copy of the gradients: its buckets) and each plan's wait for the slowest rank."""
    report, markdown = check
    workers = report["workers"]
    assert workers["note"].startswith("no GPU: 1 and 2 processes")
    one, two = workers["runs"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["ddp_bytes"] is None and one["timed_steps"] == two["timed_steps"] == 6
    assert two["ddp_bytes"] >= two["grad_bytes"] > 0
    for run in (one, two):
        assert run["complexes_per_second"] > 0 and run["step_seconds"] > 0
    for plan in ("balanced", "rank by rank"):
        wait = two["waits"][plan]
        assert 0 <= wait["wait_seconds"] < wait["slowest_seconds"]
    assert "## Data-parallel workers" in markdown and "| 2 |" in markdown


def test_five_probes_in_a_row_are_set_against_a_run_of_a_whole_cycle(check):
    """Five predictions of the step on the data, their spread, and each one's error against
    the mean step of a run of the check's cycle (20 steps with --quick) at the same budget."""
    report, markdown = check
    repeat = report["repeat"]
    predicted, mean = repeat["predicted"], repeat["run_mean_step_seconds"]
    assert len(predicted) == 5 and all(p > 0 for p in predicted)
    assert repeat["spread"] == pytest.approx(
        (max(predicted) - min(predicted)) / (sum(predicted) / 5)
    )
    assert repeat["run_steps"] == 20 and mean > 0
    assert repeat["errors"] == pytest.approx([p / mean - 1 for p in predicted])
    low, high = repeat["run_blocks_seconds"]
    assert 0 < low <= mean <= high
    assert "## Five probes against a run" in markdown


def test_parts_runs_the_parts_named_and_refuses_a_name_it_does_not_know(tmp_path):
    run = [sys.executable, "bench/gpu_check.py", "--out", str(tmp_path), "--device", "cpu"]
    done = subprocess.run(
        [*run, "--quick", "--parts", "oom"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report) == {"meta", "oom"}
    assert "## Out of memory" in (tmp_path / "gpu_check.md").read_text()
    bad = subprocess.run([*run, "--parts", "oom,speed"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--parts: no part named speed; the parts: probe," in bad.stderr


def test_precision_compares_fp32_and_bf16(check):
    precision = check[0]["precision"]
    assert precision["fp32"]["batch_size"] >= 1
    # bf16 activations take half the bytes: a larger batch fits under the same limit
    assert precision["bf16"]["batch_size"] > precision["fp32"]["batch_size"]


def test_the_sizes_lie_in_their_stages_spaces():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))
    stages = load_stages()
    for stage, hidden, layers, rbf in gpu_check.SIZES:
        space = stages.stages[Stage(stage)].space
        for knob, value in (("hidden_channels", hidden), ("num_layers", layers), ("num_rbf", rbf)):
            choices = space[knob] if isinstance(space[knob], list) else space[knob].values()
            assert value in choices, f"{stage}: {knob}={value} is not in its space"
