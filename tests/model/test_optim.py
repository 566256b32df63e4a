"""Every optimizer and scheduler file builds and steps; Lookahead, clipping, accumulation; the
contract's parameter groups, exported configuration and audit hash."""

from __future__ import annotations

import inspect
import itertools
import math

import pytest
import torch
import yaml
from torch_geometric.data import Batch

from model import (
    Lookahead,
    OptimizerSpec,
    Trainer,
    build_optimizer,
    build_scheduler,
    default_config_dir,
    group_choices,
    load_train_config,
    run_training,
    synthetic_complexes,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def batch():
    return Batch.from_data_list(synthetic_complexes(8, 60, seed=1))


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


@pytest.mark.parametrize("optimizer", group_choices(default_config_dir(), "optimizer"))
@pytest.mark.parametrize("scheduler", group_choices(default_config_dir(), "scheduler"))
def test_every_optimizer_and_scheduler_builds_and_steps(optimizer, scheduler, tiny_config, batch):
    trainer = Trainer(tiny_config(f"optimizer={optimizer}", f"scheduler={scheduler}"), CPU, 4)
    before = flat(trainer.model)
    losses = [float(trainer.train_step(batch)) for _ in range(3)]
    assert all(math.isfinite(x) for x in losses)
    assert not torch.equal(before, flat(trainer.model))
    # what the file asks for: its torch class, its peak learning rate and every argument it sets
    written = yaml.safe_load((default_config_dir() / "optimizer" / f"{optimizer}.yaml").read_text())
    assert type(trainer.optimizer) is getattr(torch.optim, written["type"])
    decay = trainer.optimizer.param_groups[0]
    assert decay["max_lr" if scheduler == "onecycle" else "initial_lr"] == written["lr"]
    arguments = set(inspect.signature(type(trainer.optimizer)).parameters)
    written_arguments = (arguments - {"params", "lr", *OptimizerSpec.model_fields}) & set(written)
    assert written_arguments  # every file sets some (eps, momentum, ...)
    for key in written_arguments:
        value = written[key]
        assert decay[key] == (tuple(value) if isinstance(value, list) else value), key


def test_weight_decay_skips_biases_and_norms(tiny_config):
    trainer = Trainer(tiny_config(), CPU, 4)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])
    plain = Trainer(tiny_config("optimizer.auto_param_groups=false"), CPU, 4)
    assert len(plain.optimizer.param_groups) == 1


def lrs(scheduler_name, steps=20, **extra):
    config = load_train_config(
        [f"scheduler={scheduler_name}", "optimizer.lr=0.1", "optimizer.warmup_steps=5"]
        + [f"{k}={v}" for k, v in extra.items()]
    )
    param = torch.nn.Parameter(torch.zeros(2))
    model = torch.nn.Module()
    model.register_parameter("w", param)
    optimizer = build_optimizer(config.optimizer, model, CPU)
    scheduler = build_scheduler(config.scheduler, config.optimizer, optimizer, steps)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    seen.append(optimizer.param_groups[0]["lr"])
    return seen


def test_cosine_warms_up_peaks_and_ends_at_min_lr():
    seen = lrs("cosine", **{"scheduler.min_lr": 0.001})
    assert seen[0] == pytest.approx(0.1 * 0.01)
    assert seen[5] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(seen[5:]))
    assert seen[-1] == pytest.approx(0.001)


def test_onecycle_rises_over_the_warmup_then_anneals_to_min_lr():
    seen = lrs("onecycle", **{"scheduler.min_lr": 0.0001})
    assert seen[0] == pytest.approx(0.1 * 0.04)
    assert max(seen) == pytest.approx(0.1) and seen.index(max(seen)) == 5
    assert seen[-1] == pytest.approx(0.0001)


def test_constant_schedule_with_and_without_warmup():
    assert lrs("none")[5:] == [pytest.approx(0.1)] * 16
    assert lrs("none", **{"scheduler.warmup_steps": 0}) == [pytest.approx(0.1)] * 21


def test_lookahead_pulls_fast_weights_back_every_k_steps():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    base = torch.optim.SGD([w], lr=0.1)
    opt = Lookahead(base, alpha=0.5, k=2)
    for _ in range(2):
        w.grad = torch.tensor([1.0])
        opt.step()
    # fast: 1.0 -> 0.9 -> 0.8; slow: 1.0 + 0.5 * (0.8 - 1.0) = 0.9; fast reset to slow
    assert float(w.detach()) == pytest.approx(0.9)
    w.grad = torch.tensor([1.0])
    opt.step()
    assert float(w.detach()) == pytest.approx(0.8)
    state = opt.state_dict()
    again = Lookahead(torch.optim.SGD([w], lr=0.1), alpha=0.5, k=2)
    again.load_state_dict(state)
    assert again._fast_steps == 3


def test_lookahead_wraps_any_optimizer_from_the_command_line(tiny_config, batch):
    for name in ("sgd", "adamw", "rmsprop"):
        trainer = Trainer(
            tiny_config(f"optimizer={name}", "optimizer.lookahead.enabled=true"), CPU, 4
        )
        assert isinstance(trainer.optimizer, Lookahead)
        for _ in range(6):
            assert math.isfinite(float(trainer.train_step(batch)))


def test_clipping_bounds_the_update(tiny_config, batch):
    trainer = Trainer(
        tiny_config(
            "optimizer=sgd",
            "optimizer.momentum=0.0",
            "optimizer.nesterov=false",
            "optimizer.weight_decay=0.0",
            "optimizer.lr=1.0",
            "scheduler=none",
            "optimizer.clip_grad_norm=1e-4",
            "optimizer.warmup_steps=0",
        ),
        CPU,
        4,
    )
    before = flat(trainer.model)
    trainer.train_step(batch)
    assert float((flat(trainer.model) - before).norm()) <= 1e-4 * 1.001


def test_accumulating_two_half_batches_equals_one_full_batch(tiny_config):
    data = synthetic_complexes(8, 60, seed=4)
    sgd = [
        "optimizer=sgd",
        "optimizer.momentum=0.0",
        "optimizer.nesterov=false",
        "optimizer.weight_decay=0.0",
        "scheduler=none",
        "optimizer.warmup_steps=0",
        "optimizer.clip_grad_norm=null",
    ]
    full = Trainer(tiny_config(*sgd), CPU, 4)
    full.train_step(Batch.from_data_list(data))
    halves = Trainer(tiny_config(*sgd, "optimizer.accumulate_steps=2"), CPU, 4)
    before = flat(halves.model)
    halves.train_step(Batch.from_data_list(data[:4]))
    assert torch.equal(before, flat(halves.model))  # no optimizer step yet
    halves.train_step(Batch.from_data_list(data[4:]))
    torch.testing.assert_close(flat(halves.model), flat(full.model), rtol=1e-4, atol=1e-6)


def test_end_of_epoch_flushes_a_partial_accumulation(tiny_config, batch):
    trainer = Trainer(tiny_config("optimizer.accumulate_steps=4"), CPU, 4)
    before = flat(trainer.model)
    trainer.train_step(batch)
    trainer.end_epoch()
    assert not torch.equal(before, flat(trainer.model))


def test_torch_rejecting_a_combination_is_a_config_error(tiny_config):
    from model import ConfigError

    with pytest.raises(ConfigError, match=r"optimizer sgd \(torch.optim.SGD\): Nesterov momentum"):
        Trainer(tiny_config("optimizer=sgd", "optimizer.momentum=0.0"), CPU, 4)


def test_no_decay_patterns_and_their_weight_decay(tiny_config, caplog):
    trainer = Trainer(
        tiny_config(
            "optimizer.auto_param_groups.no_decay_patterns=['*embedding.weight']",
            "optimizer.auto_param_groups.override_no_decay_weight=1e-4",
        ),
        CPU,
        4,
    )
    decay, no_decay = trainer.optimizer.param_groups
    exempt = {id(p) for p in no_decay["params"]}
    named = dict(trainer.model.named_parameters())
    matrices = {n for n, p in named.items() if id(p) in exempt and p.ndim > 1}
    assert matrices == {n for n in named if n.endswith("embedding.weight")} and matrices
    assert all(id(p) in exempt for p in named.values() if p.ndim == 1)
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 1e-4)
    with caplog.at_level("WARNING", logger="model"):
        Trainer(tiny_config("optimizer.auto_param_groups.no_decay_patterns=['*.bais']"), CPU, 4)
    assert "no_decay_patterns: '*.bais' names no parameter" in caplog.text


def test_export_json_to_a_path_and_the_hash_in_the_audit_log(tiny_config, tmp_path):
    folder = run_training(tiny_config(f"optimizer.export_json={tmp_path / 'exports'}"))
    run_dir = tmp_path / "runs" / folder.config_hash[:12]
    exported = tmp_path / "exports" / f"{folder.config_hash[:12]}.json"
    assert exported.is_file() and not (run_dir / "config.json").exists()
    assert load_train_config(profile=exported).digest() == folder.config_hash
    audit = (tmp_path / "runs" / "audit.md").read_text()
    assert f"replay: `stagetune train --profile {exported}`" in audit
    assert f"sha256:{folder.config_hash}" in audit  # hash_to_debuglog is on by default

    file = tmp_path / "best.json"
    quiet = run_training(
        tiny_config(f"optimizer.export_json={file}", "optimizer.hash_to_debuglog=false")
    )
    assert load_train_config(profile=file).digest() == quiet.config_hash
    entry = (tmp_path / "runs" / "audit.md").read_text().split("\n## ")[-1]
    assert f"run {quiet.config_hash[:12]}" in entry and "config hash" not in entry
