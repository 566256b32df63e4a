"""The one training loop: it learns, is reproducible, leaks nothing, and leaves an audit trail."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch_geometric.data import Batch

from model import (
    ConfigError,
    Trainer,
    live_bytes,
    load_dataset,
    load_train_config,
    run_training,
    synthetic_complexes,
)
from model._train import resolve_precision

from ..conftest import TINY, run_cli

CPU = torch.device("cpu")


@pytest.mark.slow
def test_training_on_synthetic_data_lowers_validation_loss_clearly(tiny_config):
    config = tiny_config(
        "model.hidden_channels=32",
        "model.num_heads=4",
        "model.num_rbf=16",
        "data.max_atoms=120",
        "data.num_synthetic=160",
        "train.batch_size=16",
        "train.epochs=10",
        "optimizer.warmup_steps=10",
        "optimizer.lr=2e-3",
    )
    dataset = load_dataset(config)
    val_y = torch.cat([c.y for c in dataset.val])
    constant_guess = float(((val_y - val_y.mean()) ** 2).mean())  # the best constant predictor
    seen = []
    report = run_training(config, on_epoch=seen.append, dataset=dataset)
    first, last = report.epochs[0], report.epochs[-1]
    assert [e.epoch for e in seen] == list(range(1, 11))
    assert last.val_loss < 0.7 * first.val_loss
    assert last.val_loss < 0.6 * constant_guess
    assert last.val_pearson > 0.5
    assert last.train_loss < first.train_loss


def test_same_seed_same_run(tiny_config):
    a = run_training(tiny_config("train.epochs=2"))
    b = run_training(tiny_config("train.epochs=2"))
    assert a.config_hash == b.config_hash
    assert [e.val_loss for e in a.epochs] == [e.val_loss for e in b.epochs]
    c = run_training(tiny_config("train.epochs=2", "train.seed=1"))
    assert [e.val_loss for e in c.epochs] != [e.val_loss for e in a.epochs]


@pytest.mark.slow
def test_memory_after_step_100_equals_memory_after_step_2(tiny_config):
    batch = Batch.from_data_list(synthetic_complexes(8, 60))

    def growth(trainer, keep=None):
        sizes = {}
        for step in range(1, 101):
            loss = trainer.train_step(batch)
            if keep is not None:
                keep.append(trainer.model(batch.z, batch.pos, batch.batch).sum() + loss)
            if step in (2, 100):
                sizes[step] = live_bytes()
        return sizes[100] - sizes[2]

    assert abs(growth(Trainer(tiny_config(), CPU, 10))) < 32 * 1024
    # The same measurement catches a loop that keeps a graph alive per step.
    assert growth(Trainer(tiny_config(), CPU, 10), keep=[]) > 10 * 1024 * 1024


def test_a_run_writes_audit_entry_and_replayable_configuration(tiny_config, tmp_path):
    config = tiny_config("optimizer=sgd", "optimizer.lr=0.02", "train.epochs=2")
    report = run_training(config)
    run_dir = tmp_path / "runs" / report.config_hash[:12]
    assert report.run_dir == str(run_dir)
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "metrics.json", "model.pt"}
    audit = (tmp_path / "runs" / "audit.md").read_text()
    assert f"sha256:{report.config_hash}" in audit
    assert "optimizer: sgd (torch.optim.SGD) lr=0.02, momentum=0.9, nesterov=True" in audit
    assert "result: val_rmse=" in audit

    replay = load_train_config(profile=run_dir / "config.json")
    assert replay.digest() == report.config_hash
    again = run_training(replay)
    assert [e.val_loss for e in again.epochs] == [e.val_loss for e in report.epochs]
    assert (tmp_path / "runs" / "audit.md").read_text().count("## ") == 2


def test_a_failed_run_is_audited_too(tiny_config, tmp_path):
    config = tiny_config("data.source=" + str(tmp_path / "missing"))
    with pytest.raises(Exception, match="data root not found"):
        run_training(config)
    audit = (tmp_path / "runs" / "audit.md").read_text()
    assert "failed: DataError" in audit and "replay" not in audit


def test_export_json_can_be_switched_off(tiny_config, tmp_path):
    report = run_training(tiny_config("optimizer.export_json=false"))
    assert not (tmp_path / "runs" / report.config_hash[:12] / "config.json").exists()


def test_trains_on_real_pdbbind_folders(tiny_config, pdbbind_mini, tmp_path):
    config = tiny_config(f"data.source={pdbbind_mini}", f"data.cache_dir={tmp_path / 'c'}")
    report = run_training(config)
    assert report.train_complexes + report.val_complexes == 20
    assert report.skipped == []


def test_precision_rules():
    config = load_train_config(TINY)
    assert resolve_precision(config, CPU) == "fp32"
    unsafe = load_train_config([*TINY, "optimizer.precision_safe=false", "train.precision=bf16"])
    with pytest.raises(ConfigError, match="precision_safe: false"):
        resolve_precision(unsafe, CPU)


def test_precision_rules_on_gpus(monkeypatch):
    gpu = torch.device("cuda", 0)
    capability = {"value": (8, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability["value"])
    assert resolve_precision(load_train_config(TINY), gpu) == "bf16"  # Ampere and later
    capability["value"] = (7, 0)
    assert resolve_precision(load_train_config(TINY), gpu) == "fp16"  # V100: scaled fp16
    capability["value"] = (9, 0)
    no_bf16 = load_train_config([*TINY, "optimizer.bf16_preferred=false"])
    assert resolve_precision(no_bf16, gpu) == "fp16"
    unsafe = load_train_config([*TINY, "optimizer.precision_safe=false"])
    assert resolve_precision(unsafe, gpu) == "fp32"


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled:UserWarning")
def test_bf16_autocast_and_anomaly_detection_run_on_cpu(tiny_config):
    batch = Batch.from_data_list(synthetic_complexes(4, 60))
    trainer = Trainer(tiny_config("train.precision=bf16", "optimizer.detect_anomaly=true"), CPU, 4)
    assert trainer.precision == "bf16"
    assert torch.isfinite(trainer.train_step(batch))


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler\.step\(\)`:UserWarning")
def test_epoch_hooked_warmup_is_counted_in_updates(tiny_config):
    # 3 updates an epoch, 10 epochs: warm-up of 6 updates is 2 epochs, then cosine decays
    config = tiny_config(
        "optimizer.scheduler_hook=epoch",
        "train.epochs=10",
        "optimizer.warmup_steps=6",
        "optimizer.lr=0.1",
        "scheduler.min_lr=0.001",
    )
    trainer = Trainer(config, CPU, 3)
    lrs = []
    for _ in range(10):
        lrs.append(trainer.lr)
        trainer.end_epoch()
    assert lrs[2] == pytest.approx(0.1) and lrs[0] < lrs[1] < lrs[2]
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))
    assert trainer.lr == pytest.approx(0.001)


def test_epoch_hooked_schedule_steps_once_per_epoch(tiny_config):
    trainer = Trainer(tiny_config("optimizer.scheduler_hook=epoch", "train.epochs=4"), CPU, 3)
    batch = Batch.from_data_list(synthetic_complexes(4, 60))
    for _ in range(3):
        trainer.train_step(batch)
    assert trainer.scheduler.last_epoch == 0
    trainer.end_epoch()
    assert trainer.scheduler.last_epoch == 1


@pytest.mark.slow
def test_cli_train_json(tmp_path):
    result = run_cli(
        "train",
        "--data",
        "synthetic",
        "--epochs",
        "2",
        "--json",
        "--output",
        str(tmp_path / "o"),
        *TINY[:-1],
        "optimizer=adam",
        "scheduler=onecycle",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert {"epoch", "train_loss", "val_loss", "val_rmse", "val_pearson"} <= set(
        report["epochs"][0]
    )
    assert len(report["config_hash"]) == 64
    config = json.loads((tmp_path / "o" / report["config_hash"][:12] / "config.json").read_text())
    assert config["optimizer"]["type"] == "Adam" and config["scheduler"]["type"] == "onecycle"
    assert "epoch 2/2" in (tmp_path / "o" / "train.log").read_text()


@pytest.mark.slow
def test_cli_train_report_is_the_json_report_in_a_file(tmp_path):
    """What the service's training jobs run: the report lands in its file whole."""
    from stagetune_api import TrainRunReport

    report = tmp_path / "job" / "report.json"
    result = run_cli(
        "train", "--output", str(tmp_path / "o"), "--report", str(report), *TINY, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the report went to its file
    written = TrainRunReport.model_validate_json(report.read_text())
    assert [e.epoch for e in written.epochs] == [1] and written.parameters > 0
    assert [p.name for p in report.parent.iterdir()] == ["report.json"]  # no temporary left


@pytest.mark.slow
def test_cli_flags_are_taken_as_they_are(tmp_path):
    """A folder named 2020 is a folder, not a number."""
    result = run_cli("train", "--data", "2020", *TINY, cwd=tmp_path)
    assert result.returncode == 2
    assert "--data 2020: no such folder" in result.stderr  # named as given, as a folder


@pytest.mark.slow
def test_cli_train_errors_name_the_problem(tmp_path):
    result = run_cli("train", "optimizer=adamz", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown optimizer" in result.stderr and "adamw, rmsprop, sgd" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_progress_bar_shows_steps_epoch_loss_and_time_left(tiny_config, capsys):
    config = tiny_config("train.epochs=2")
    run_training(config, progress=True)
    bar = capsys.readouterr().err
    assert "epoch 2/2" in bar and "loss=" in bar and ("step/s" in bar or "s/step" in bar)
    assert "<" in bar  # tqdm's elapsed<remaining


def test_an_interrupted_run_leaves_no_run_folder(tiny_config, tmp_path):
    config = tiny_config("train.epochs=2")

    def stop(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, on_epoch=stop)
    out = tmp_path / "runs"
    assert [p.name for p in out.iterdir()] == ["audit.md"]
    assert "KeyboardInterrupt" in (out / "audit.md").read_text()
