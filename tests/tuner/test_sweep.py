"""``stagetune train -m``: a sweep of every combination as Ray Tune trials on a real local cluster,
its summary, sweep.csv, and the files every run leaves; refusals before any trial starts."""

from __future__ import annotations

import csv
import json
import re

import pytest

from model import load_train_config
from service.cli import main
from tests.conftest import TINY
from tests.tuner.conftest import local_cluster

pytestmark = pytest.mark.slow  # sweeps on a local Ray cluster

OPTIMIZERS, LRS = ("adamw", "adam", "sgd"), ("1e-4", "3e-4", "1e-3")


@pytest.fixture(scope="module")
def cluster():
    """One local node with the two cores CI has; the sweep joins it (ray is initialised)."""
    with local_cluster({"num_cpus": 2}) as c:
        yield c


def sweep(tmp_path, monkeypatch, capsys, overrides, *flags: str) -> tuple[int, str, str]:
    """``stagetune train -m`` in this process, on the cluster it is connected to."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code = main(["train", "-m", *TINY, *overrides, "--output", str(tmp_path), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_three_by_three_sweep_runs_nine_trials_with_a_summary_and_sweep_csv(
    cluster, tmp_path, monkeypatch, capsys
):
    code, out, err = sweep(
        tmp_path,
        monkeypatch,
        capsys,
        [f"optimizer={','.join(OPTIMIZERS)}", "scheduler=cosine", f"optimizer.lr={','.join(LRS)}"],
        "--max-concurrent",
        "2",
        "--cpus-per-trial",
        "1",
    )
    assert code == 0, err
    (folder,) = (tmp_path / "sweeps").iterdir()
    # nine Ray Tune trials of one experiment, named for the sweep (the Actors view shows it)
    trials = [p for p in (folder / "ray").iterdir() if p.name.startswith(f"sweep-{folder.name}_")]
    assert len(trials) == 9

    rows = read_csv(folder / "sweep.csv")
    assert list(rows[0])[:4] == ["run", "optimizer", "optimizer.lr", "rank"]
    assert {(r["optimizer"], r["optimizer.lr"]) for r in rows} == {
        (o, lr) for o in OPTIMIZERS for lr in LRS
    }
    assert all(r["status"] == "completed" and r["epochs"] == "1" for r in rows)
    assert sorted(int(r["rank"]) for r in rows) == list(range(1, 10))

    # the summary: one line per run, lowest validation loss first, as sweep.csv ranks them
    table = out.splitlines()
    assert table[0].split()[:4] == ["rank", "optimizer", "optimizer.lr", "val_loss"]
    lines = [line.split() for line in table[1:10]]
    losses = [float(cells[3]) for cells in lines]
    assert losses == sorted(losses)
    by_rank = sorted(rows, key=lambda r: int(r["rank"]))
    assert [cells[1:3] for cells in lines] == [[r["optimizer"], r["optimizer.lr"]] for r in by_rank]
    assert table[10] == f"sweep.csv: {folder / 'sweep.csv'}"

    # every run leaves what `stagetune train` leaves: its folder, config.json, an audit entry
    audit = (tmp_path / "audit.md").read_text()
    assert audit.count("\n## ") + audit.startswith("## ") == 9
    for r in rows:
        exported = tmp_path / r["config_hash"][:12] / "config.json"
        assert {p.name for p in exported.parent.iterdir()} == {
            "config.json",
            "metrics.json",
            "model.pt",
        }
        replay = load_train_config(profile=exported)
        assert replay.digest() == r["config_hash"]
        assert replay.optimizer.name == r["optimizer"]
        assert replay.optimizer.hyperparameters["lr"] == float(r["optimizer.lr"])
        assert f"sha256:{r['config_hash']}" in audit


def test_asha_stops_runs_early_and_each_stopped_run_still_leaves_its_trail(
    cluster, tmp_path, monkeypatch, capsys
):
    """SGD at lr 1e-2 learns in the first epoch; at 1e-8 and 1e-9 it does not. Run one after
    the other, the two that do not learn fall below ASHA's cut at its first rung."""
    code, out, err = sweep(
        tmp_path,
        monkeypatch,
        capsys,
        ["optimizer=sgd", "optimizer.lr=1e-2,1e-8,1e-9", "train.epochs=3"],
        "--asha",
        "--grace-period",
        "1",
        "--reduction-factor",
        "3",
        "--max-concurrent",
        "1",
        "--json",
    )
    assert code == 0, err
    answer = json.loads(out)
    runs = {r["optimizer.lr"]: r for r in answer["runs"]}
    assert runs["1e-2"]["status"] == "completed" and runs["1e-2"]["epochs"] == 3
    assert runs["1e-2"]["rank"] == 1
    for lr in ("1e-8", "1e-9"):
        assert (runs[lr]["status"], runs[lr]["epochs"]) == ("stopped_early", 1)
    audit = (tmp_path / "audit.md").read_text()
    assert audit.count("\n## ") + 1 == 3 and "failed" not in audit  # one entry per run
    assert len(re.findall(r"stopped early by ASHA after 1 of 3 epochs", audit)) == 2
    for r in runs.values():
        exported = tmp_path / r["config_hash"][:12] / "config.json"
        assert load_train_config(profile=exported).digest() == r["config_hash"]
    assert len(read_csv(tmp_path / "sweeps" / answer["sweep_id"] / "sweep.csv")) == 3


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["optimizer=adamw,adamx"],
            r"sweep run optimizer=adamx: .*unknown optimizer.*choose "
            r"one of: adafactor, adam, adamw, rmsprop, sgd",
        ),
        (["optimizer.lrr=1e-4,1e-3"], r"optimizer\.lrr: unknown key \(did you mean 'lr'\?\)"),
        (
            ["optimizer=sgd", "optimizer.lr=1e-3,-1"],
            r"sweep run optimizer\.lr=-1: .*Invalid "
            r"learning rate",
        ),
        (
            ["optimizer=adamw,sgd", "optimizer.betas=[0.9,0.95]"],
            r"(?s)sweep run optimizer=sgd: .*"
            r"optimizer\.betas: unknown key",
        ),
        (
            ["optimizer.lr=1e-3,0.001"],
            r"optimizer\.lr=1e-3 and optimizer\.lr=0\.001 compose the "
            r"same configuration",
        ),
    ],
)
def test_a_bad_key_or_choice_is_refused_before_any_trial_starts(
    overrides, expected, tmp_path, monkeypatch, capsys
):
    code, out, err = sweep(tmp_path, monkeypatch, capsys, overrides)
    assert code == 2 and out == ""
    assert re.search(expected, err), err
    assert not (tmp_path / "sweeps").exists()  # the sweep's folder is made when trials start
