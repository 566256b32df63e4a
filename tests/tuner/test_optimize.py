"""Whole jobs on a real local Ray cluster of two nodes, each declaring one GPU (Ray accepts GPU
counts on a machine without any: placement is real, the probes run on the CPU).

One cluster serves the module; each job is tiny (the quick preset), so the module runs in a few
minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import psutil
import pytest
import ray
import yaml

from model import ConfigError, load_train_config, run_training
from tests.conftest import REPO
from tests.tuner.conftest import local_cluster
from tuner import (
    JobData,
    JobSpec,
    Stage,
    build_job_spec,
    dominates,
    optimize,
    read_trials_csv,
)

pytestmark = pytest.mark.slow  # real jobs on a local Ray cluster


@pytest.fixture(scope="module")
def cluster():
    """Two nodes, each with a GPU (a T4 on the second)."""
    worker = {"num_cpus": 1, "num_gpus": 1, "resources": {"accelerator_type:T4": 1}}
    with local_cluster({"num_cpus": 1, "num_gpus": 1}, worker) as c:
        yield c


def quick(tmp_path: Path, **options) -> JobSpec:
    return build_job_spec({"preset": "quick", "storage": str(tmp_path), **options})


SEARCHED = ("hidden_channels", "num_layers", "num_rbf")


def knobs_of(rows, trial_id):
    """The searched knobs of a trial, from trials.csv (which holds the whole model spec)."""
    return {
        r["variable"].removeprefix("model."): r["value"]
        for r in rows
        if r["trial_id"] == trial_id and r["variable"].removeprefix("model.") in SEARCHED
    }


def test_a_job_answers_every_stage_from_trials_on_both_nodes(cluster, tmp_path):
    spec = quick(tmp_path, job_id="both", tune_trials=6, max_epochs=4)
    result = optimize(spec, output=tmp_path / "out")
    job = spec.job_dir

    document = json.loads((job / "result.json").read_text())
    schema = json.loads((REPO / "docs" / "result.schema.json").read_text())
    jsonschema.validate(document, schema)
    assert set(document["stages"]) == {"prototyping", "validation", "production"}
    for stage in Stage:
        answer = result.stages[stage]
        assert answer.feasible, answer.reason
        assert answer.probe is not None and answer.batch_size <= answer.probe.max_batch_size
        assert answer.validation is not None and answer.validation.trials == 6
        # what its best trial shows on the validation complexes, said in the result
        validation = answer.validation
        assert validation.baseline_loss > 0 and validation.val_loss_se > 0
        assert validation.verdict in {"learned", "no_better_than_mean", "indistinguishable"}
        assert validation.verdict_words.startswith(
            "learned" if validation.verdict == "learned" else "no winner"
        )
        assert answer.device is not None and answer.device.device == "cpu"
        # the profile trains as it is
        profile = load_train_config(profile=job / answer.profile)
        assert profile.digest() == answer.config_hash
        assert profile.train.batch_size == answer.batch_size
        assert (tmp_path / "out" / answer.profile).is_file()
        # the stage's batches: its atom budget, and its cycle predicted on the job's own data
        batching = answer.batching
        assert batching is not None and batching.max_atoms_per_batch >= answer.batch_size
        assert profile.train.max_atoms_per_batch == batching.max_atoms_per_batch
        assert batching.complexes_per_batch > 0 and batching.cycle_minutes_on_data > 0
        assert batching.cycle_minutes_worst_case == answer.probe.cycle_minutes
        assert answer.budget is not None and answer.budget.cycle_batches == 450
        # production says how many workers train it: one, with a GPU a node
        if stage is Stage.PRODUCTION:
            assert answer.workers is not None and answer.workers.count == 1
            assert answer.workers.reason == "each node has one GPU: one process trains it"
            assert profile.train.workers == 1 and answer.workers.step_seconds is None
        else:
            assert answer.workers is None

    rows = read_trials_csv(job / "trials.csv")
    nodes = {r["node_id"] for r in rows if r["status"] != "pruned"}
    assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    stopped = {r["trial_id"] for r in rows if r["status"] == "stopped_early"}
    assert stopped, "ASHA stopped no trial early"
    epochs = {r["trial_id"]: r["value"] for r in rows if r["variable"] == "train.epochs_run"}
    assert all(epochs[t] < 4 for t in stopped)
    assert sum(a.validation.stopped_early for a in result.stages.values()) == len(stopped)
    # every variable is typed
    types = {r["variable"]: r["type"] for r in rows}
    assert types["model.hidden_channels"] == "int"
    assert types["model.cutoff"] == "float"  # knobs the space does not search are there too
    assert types["probe.step_seconds"] == "float"
    assert types["probe.max_atoms_per_batch"] == "int"
    assert types["probe.data.cycle_minutes"] == "float"
    assert types["probe.feasible"] == "bool"
    assert types["optimizer.lookahead.enabled"] == "bool"
    assert types["optimizer.name"] == "str"
    assert types["tune.lr_factor"] == "float"
    assert types["result.val_baseline_loss"] == "float"  # every trial's baseline, recorded
    # the quick preset sets optimizer.warmup_steps itself: the tune search keeps it
    assert "tune.warmup_steps" not in types
    assert {r["value"] for r in rows if r["variable"] == "optimizer.warmup_steps"} == {5}
    audit = (job / "audit.md").read_text()
    for stage in Stage:
        assert f"`{result.stages[stage].config_hash}`" in audit
    trial_line = r"production tune: trial \w+ finished \([1-6]/6\)"
    assert re.search(trial_line, (job / "job.log").read_text())
    # a probe's limit says where it comes from: the fraction of the preset's budget
    assert "of 230.40 MiB (90 % of 256.00 MiB)" in (job / "job.log").read_text()
    progress = json.loads((job / "progress.json").read_text())
    assert progress["stages"]["production"]["tune"]["done"] == 6
    assert progress["stages"]["production"]["tune"]["total"] == 6
    assert result.provenance.device_hours > 0
    assert result.hardware["nodes"] and len(result.hardware["nodes"]) == 2


def test_configurations_that_dominate_a_failure_are_not_probed(cluster, tmp_path):
    # 8 MiB (limit 7.2 MiB): 64 channels x 2 layers needs about 11 MiB at batch 1, and every
    # other point of this space dominates it, so nothing fits and something is always pruned
    spec = quick(
        tmp_path,
        job_id="prune",
        stages=["production"],
        tune=False,
        max_concurrent=1,
        memory_budget="8MiB",
        fit_trials=4,
        space={"production": {"hidden_channels": [64, 128], "num_layers": [2, 3]}},
    )
    result = optimize(spec)
    rows = read_trials_csv(spec.job_dir / "trials.csv")
    trials = {r["trial_id"]: r["status"] for r in rows}
    pruned = [t for t, s in trials.items() if s == "pruned"]
    probed = sorted(
        (t for t, s in trials.items() if s == "probed"),
        key=lambda t: next(r["started"] for r in rows if r["trial_id"] == t),
    )
    assert pruned and len(pruned) + len(probed) == 4
    failed_before = []
    for t in probed:  # one at a time: each ran after every earlier failure was known
        knobs = knobs_of(rows, t)
        assert not any(dominates(knobs, f) for f in failed_before)
        failed_before.append(knobs)
    for t in pruned:
        assert any(dominates(knobs_of(rows, t), f) for f in failed_before)
    answer = result.stages[Stage.PRODUCTION]
    assert not answer.feasible
    assert "nothing fits" in answer.reason and "64" in answer.reason
    assert answer.pruned == len(pruned)


def test_an_accelerator_type_keeps_trials_on_its_nodes(cluster, tmp_path):
    spec = quick(
        tmp_path,
        job_id="typed",
        stages=["prototyping"],
        tune=False,
        accelerator_type="T4",
        fit_trials=2,
    )
    optimize(spec)
    rows = read_trials_csv(spec.job_dir / "trials.csv")
    typed = {n["NodeID"] for n in ray.nodes() if "accelerator_type:T4" in n["Resources"]}
    assert {r["node_id"] for r in rows} == typed


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"gpus_per_trial": 2}, "gpus_per_trial=2, but the most GPUs on one node is 1"),
        ({"cpus_per_trial": 4}, "cpus_per_trial=4, but the most CPUs on one node is 1"),
        ({"accelerator_type": "H100"}, "accelerator_type='H100': no node has it; the cluster has"),
    ],
)
def test_requests_no_node_can_meet_are_errors_before_any_trial(cluster, tmp_path, options, named):
    spec = quick(tmp_path, job_id="bad", **options)
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        optimize(spec)
    assert not (spec.job_dir / "ray").exists() or not any((spec.job_dir / "ray").iterdir())


def running_trials() -> list[psutil.Process]:
    """This test cluster's worker processes inside a trial's training function (titled
    ``ray::ImplicitFunc.train``): descendants of this process, never another Ray's."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith("ray::ImplicitFunc.train"):
                found.append(p)
        except psutil.Error:  # gone since it was listed
            continue
    return found


def test_a_trial_whose_worker_is_killed_is_retried_and_the_job_completes(cluster, tmp_path):
    # more complexes than the preset's, so that a trial trains for seconds
    more_data = ["data.num_synthetic=600", "model.num_heads=2", "optimizer.warmup_steps=5"]
    spec = quick(
        tmp_path,
        job_id="kill",
        stages=["prototyping"],
        tune_trials=2,
        max_epochs=4,
        overrides=more_data,
    )
    outcome: dict = {}
    job = threading.Thread(target=lambda: outcome.update(result=optimize(spec)), daemon=True)
    job.start()
    killed = None
    deadline = time.time() + 240
    while killed is None and job.is_alive() and time.time() < deadline:
        # the fit search is over once the tune experiment exists: a running trial is training
        tuning = (spec.job_dir / "ray" / "prototyping-tune").is_dir()
        trials = running_trials() if tuning else []
        if trials:
            time.sleep(0.5)  # mid-trial: its model is built and it is training
            if trials[0].is_running():
                killed = trials[0].pid
                trials[0].send_signal(signal.SIGKILL)
        time.sleep(0.2)
    job.join(timeout=300)
    assert killed is not None, "no tune trial was seen running"
    result = outcome["result"]
    assert result.stages[Stage.PROTOTYPING].validation is not None
    rows = read_trials_csv(spec.job_dir / "trials.csv")
    tune_rows = [r for r in rows if r["search"] == "tune"]
    assert max(r["retries"] for r in tune_rows) >= 1
    assert {r["status"] for r in tune_rows} <= {"completed", "stopped_early"}


def quick_command(cluster, storage: Path, *flags: str) -> list[str]:
    """``stagetune optimize`` of the quick preset without its tune search, on ``cluster``."""
    command = [sys.executable, "-m", "service.cli", "optimize", "--preset", "quick", "--no-tune"]
    return [*command, "--address", cluster.address, "--storage", str(storage), *flags]


def test_an_interrupted_job_resumes_where_it_stopped(cluster, tmp_path):
    stages = ["--stages", "prototyping,validation"]
    command = quick_command(cluster, tmp_path, "--job-id", "resume", *stages)
    job = tmp_path / "resume"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = job / "searches" / "prototyping-fit.json"
    deadline = time.time() + 180
    while not done.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert done.is_file(), "the first search never finished"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert not (job / "result.json").exists()
    saved = done.stat().st_mtime

    second = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    result = json.loads(second.stdout)
    assert set(result["stages"]) == {"prototyping", "validation"}
    assert done.stat().st_mtime == saved  # not run again
    assert "prototyping-fit: finished before, not run again" in (job / "job.log").read_text()
    # Ray Tune's notes on the trials it restores are for the log, not the terminal
    assert "Failed to fetch metrics" not in second.stderr
    if "resuming the experiment" in second.stderr:
        assert "trials interrupted before their first result run again" in second.stderr


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_a_finished_job_keeps_its_result(
    cluster, tmp_path
):
    command = quick_command(
        cluster, tmp_path, "--job-id", "stop", "--stages", "prototyping", "--max-concurrent", "1"
    )
    job = tmp_path / "stop"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        progress = job / "progress.json"
        text = progress.read_text() if progress.is_file() else ""
        if '"done": 1' in text:
            break
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "--job-id stop" in err
    assert not (job / "result.json").exists() and not (job / "searches").exists()

    second = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    elapsed = json.loads(second.stdout)["provenance"]["elapsed_seconds"]
    third = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert json.loads(third.stdout)["provenance"]["elapsed_seconds"] == elapsed
    assert "finished before" in third.stderr


def test_a_stage_without_an_answer_makes_the_exit_status_3(cluster, tmp_path):
    done = subprocess.run(
        [
            *quick_command(cluster, tmp_path, "--stages", "prototyping"),
            "--fit-trials",
            "1",
            "--memory-budget",
            "1MiB",
            "--max-atoms",
            "2000",
            "--tune-table",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "prototyping: nothing fits: no configuration fits in memory" in done.stdout
    # Ray Tune's trial table, asked for, in the output people read (stdout keeps the answer)
    assert "Trial status:" in done.stderr and "Trial status:" not in done.stdout


def test_one_trial_at_a_time_the_seed_repeats_production_and_the_result_says_so(cluster, tmp_path):
    answers = []
    for job_id in ("once", "again"):
        spec = quick(
            tmp_path,
            job_id=job_id,
            stages=["production"],
            max_concurrent=1,
            fit_trials=2,
            tune_trials=3,
            max_epochs=2,
        )
        result = optimize(spec)
        answer = result.stages[Stage.PRODUCTION]
        answers.append((answer.model, answer.batch_size, answer.optimizer, answer.scheduler))
        assert result.provenance.reproducibility == []
    assert answers[0] == answers[1]
    many = quick(tmp_path, job_id="many", stages=["prototyping"], tune=False, fit_trials=1)
    notes = optimize(many).provenance.reproducibility
    assert any("max_concurrent=2" in n for n in notes)
    assert any(n.startswith("prototyping: ranked by measured throughput") for n in notes)


def test_resuming_with_other_settings_is_refused(cluster, tmp_path):
    spec = quick(tmp_path, job_id="same", stages=["prototyping"], tune=False, fit_trials=1)
    optimize(spec)
    other = quick(tmp_path, job_id="same", stages=["prototyping"], tune=False, fit_trials=2)
    with pytest.raises(ConfigError, match=r"job same exists .* other settings \(fit_trials\)"):
        optimize(other)


def test_an_invalid_model_is_reported_and_prunes_nothing(cluster, tmp_path):
    # with 8 heads, 20 channels is no model (heads must divide channels); 32 is one
    spec = quick(
        tmp_path,
        job_id="invalid",
        stages=["prototyping"],
        tune=False,
        max_concurrent=1,
        overrides=["model.num_heads=8"],
        fit_trials=2,
        space={"prototyping": {"hidden_channels": [20, 32], "num_layers": [1], "num_rbf": [8]}},
    )
    result = optimize(spec)
    rows = read_trials_csv(spec.job_dir / "trials.csv")
    status = {r["trial_id"]: r["status"] for r in rows}
    assert sorted(status.values()) == ["invalid", "probed"]  # 32 was probed, not pruned
    assert result.stages[Stage.PROTOTYPING].model["hidden_channels"] == 32


def test_a_job_on_real_data_predicts_its_cycles_on_that_datas_batches(
    cluster, tmp_path, pdbbind_mini
):
    """Every probe measures its configuration on the job's own complexes at its atom budget;
    the stage's cycle is the one those batches take."""
    spec = quick(
        tmp_path,
        job_id="real",
        stages=["prototyping"],
        tune=False,
        fit_trials=2,
        data=str(pdbbind_mini),
        max_atoms=120,
        overrides=["model.num_heads=2", f"data.cache_dir={tmp_path / 'cache'}"],
    )
    answer = optimize(spec).stages[Stage.PROTOTYPING]
    assert answer.feasible and "on the job's data" in answer.reason
    batching = answer.batching
    assert batching.max_atoms_per_batch >= 120 and batching.complexes_per_batch > 1
    assert batching.cycle_minutes_on_data == pytest.approx(450 * batching.step_seconds_on_data / 60)
    rows = read_trials_csv(spec.job_dir / "trials.csv")
    counts = {r["value"] for r in rows if r["variable"] == "probe.data.complexes"}
    assert counts == {16}  # the 20 complexes less the validation fifth
    profile = load_train_config(profile=spec.job_dir / answer.profile)
    assert profile.train.max_atoms_per_batch == batching.max_atoms_per_batch
    assert profile.data.source == str(pdbbind_mini)
    # what the answer says a step holds is what the profile's training packs
    said = f"about {batching.complexes_per_batch:.0f} complexes a step on the job's data"
    assert said in answer.summary
    meta = yaml.safe_load((spec.job_dir / answer.profile).read_text())["meta"]
    assert meta["summary"] == answer.summary
    one_epoch = load_train_config(
        profile=spec.job_dir / answer.profile,
        settings={"train.epochs": 1, "train.output_dir": str(tmp_path / "runs")},
    )
    trained = run_training(one_epoch).epochs[0].complexes_per_step["mean"]
    assert trained == pytest.approx(batching.complexes_per_batch, rel=0.25)
    # max_atoms=120 would crop the real complexes: the job probes and trains them whole
    largest = max(
        JobData.read(
            load_train_config(
                settings={
                    "data.source": str(pdbbind_mini),
                    "data.cache_dir": str(tmp_path / "cache"),
                }
            )
        ).atom_counts
    )
    assert largest > 120 and profile.data.max_atoms == largest
    assert answer.probe.sample_atoms == largest
    assert f"max_atoms raised from 120 to {largest}" in (spec.job_dir / "job.log").read_text()
