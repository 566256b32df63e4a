"""The production answer on a cluster whose node declares two GPUs: two data-parallel workers, with
the step at two workers measured by a short distributed probe on Ray Train (here on the CPU with
gloo: the GPUs are declared, not visible), and a profile that trains on them."""

from __future__ import annotations

import pytest
import yaml

from stagetune_api import Stage
from tuner import build_job_spec, optimize

from .conftest import local_cluster

pytestmark = pytest.mark.slow  # a job and Ray Train's workers on a local Ray


@pytest.fixture(scope="module")
def cluster():
    with local_cluster({"num_cpus": 2, "num_gpus": 2}) as c:
        yield c


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
    assert workers.atoms_per_worker == answer.batching.max_atoms_per_batch
    assert workers.atom_imbalance is not None and 0.0 <= workers.atom_imbalance < 1.0
    profile = yaml.safe_load((spec.job_dir / "profiles" / "production.yaml").read_text())
    assert profile["train"]["workers"] == 2
    assert "2 workers, one GPU each" in profile["meta"]["workers"]
    # resumed, the job reads the probe back instead of running it again
    again = optimize(spec)
    assert again.stages[Stage.PRODUCTION].workers == workers
