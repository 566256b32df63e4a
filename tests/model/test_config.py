"""Composing configs/ with profiles and overrides, and the errors a user sees."""

from __future__ import annotations

import json
import shutil

import pytest

from model import ConfigError, default_config_dir, group_choices, load_train_config


def test_defaults_compose_into_a_typed_config():
    config = load_train_config()
    assert config.optimizer.name == "adamw" and config.optimizer.type == "AdamW"
    assert config.scheduler.type == "cosine"
    assert config.optimizer.hyperparameters["betas"] == [0.9, 0.999]
    assert config.model.hidden_channels % config.model.num_heads == 0


def test_switch_groups_and_override_values():
    config = load_train_config(
        ["optimizer=sgd", "optimizer.lr=0.01", "scheduler=onecycle", "model.hidden_channels=64"]
    )
    assert config.optimizer.type == "SGD"
    assert config.optimizer.hyperparameters == {
        "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
    }  # fmt: skip
    assert config.scheduler.type == "onecycle" and config.model.hidden_channels == 64


def test_a_group_switch_replaces_the_whole_section_before_dotted_overrides():
    config = load_train_config(["optimizer.lr=0.05", "optimizer=sgd"])
    assert config.optimizer.hyperparameters["lr"] == 0.05
    assert "betas" not in config.optimizer.hyperparameters  # nothing of adamw is left


def test_scientific_notation_is_a_number():
    assert load_train_config(["optimizer.lr=1e-3"]).optimizer.hyperparameters["lr"] == 0.001


def test_optimizer_hyperparameters_torch_accepts_can_be_added():
    config = load_train_config(["optimizer.amsgrad=true"])
    assert config.optimizer.hyperparameters["amsgrad"] is True


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optimizer=adamx"], "optimizer=adamx: unknown optimizer .*choose one of: adafactor, "
         "adam, adamw, rmsprop, sgd"),
        (["scheduler=linear"], "choose one of: cosine, none, onecycle"),
        (["model.hidden_chanels=64"], r"model.hidden_chanels: unknown key \(did you mean "
         r"'hidden_channels'\?\) \(command line 'model.hidden_chanels=64'\); accepted keys: "),
        (["model.hidden_channels=abc"], r"model.hidden_channels: .*integer.*'abc'"),
        (["model.hidden_channels=0"], r"model.hidden_channels: .*greater than 0"),
        (["train.precision=fp8"], r"train.precision: .*'auto', 'fp32', 'bf16' or 'fp16'"),
        (["train.device=tpu"], r"device 'tpu': use auto, cpu, cuda or cuda:N"),
        (["model.hidden_channels=36"], r"hidden_channels=36 must be a multiple of num_heads=8"),
        (["optimizer.lrr=0.1"], r"optimizer.lrr: unknown key \(did you mean 'lr'\?\); accepted: "
         r"the contract keys and torch.optim.AdamW's arguments: .*\bamsgrad\b"),
        (["optimizer.lr=fast"], r"optimizer.lr: must be a number \(got 'fast'\) \(command line"),
        (["optimizer.betas=[0.9]"], r"optimizer.betas: must be a list of 2 values"),
        (["optimizer.amsgrad=3"], r"optimizer.amsgrad: must be true or false \(got 3\)"),
        (["optimizer.type=Adamx"], r"optimizer.type: 'Adamx' is not a torch.optim optimizer; "
         r"choose one of: .*AdamW"),
        (["optimizer.lookahead.alpha=2"], r"optimizer.lookahead.alpha: .*less than or equal to 1"),
        (["optimizer.type=LBFGS"], r"'LBFGS' cannot train this model: it needs a closure"),
        (["data.source={x: 1}"], r"data.source: .*valid string.*\(command line 'data.source="),
        (["foo.bar=1"], r"foo: unknown key .*accepted keys: data, model, optimizer, scheduler, "
         r"train"),
        (["model.hidden_channels.x=1"], r"model.hidden_channels is a value, not a section"),
        (["hidden_channels"], r"'hidden_channels' is not KEY=VALUE"),
        (["model.cutoff=[1"], r"override 'model.cutoff=\[1': not valid YAML"),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_the_choices(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        load_train_config(overrides)


def test_a_wrong_key_in_a_yaml_file_names_the_file(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(default_config_dir(), configs)
    (configs / "optimizer" / "mine.yaml").write_text(
        (configs / "optimizer" / "adamw.yaml").read_text().replace("warmup_steps:", "warmup_step:")
    )
    assert "mine" in group_choices(configs, "optimizer")
    with pytest.raises(ConfigError) as info:
        load_train_config(["optimizer=mine"], config_dir=configs)
    message = str(info.value)
    assert "optimizer.warmup_step: unknown key (did you mean 'warmup_steps'?)" in message
    assert str(configs / "optimizer" / "mine.yaml") in message


def test_a_profile_sits_between_the_files_and_the_command_line(tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "meta: {stage: prototyping}\nmodel: {hidden_channels: 24, num_heads: 4}\n"
        "optimizer: {lr: 0.002}\n"
    )
    config = load_train_config(["optimizer.lr=0.003"], profile=profile)
    assert config.model.hidden_channels == 24 and config.model.num_layers == 6
    assert config.optimizer.hyperparameters["lr"] == 0.003


def test_an_exported_configuration_replays_exactly(tmp_path):
    config = load_train_config(["optimizer=rmsprop", "scheduler=none", "model.num_layers=3"])
    exported = tmp_path / "config.json"
    exported.write_text(json.dumps(config.to_dict()))
    replay = load_train_config(profile=exported)
    assert replay == config and replay.digest() == config.digest()
    assert load_train_config(["model.num_layers=4"], profile=exported).digest() != config.digest()


def test_a_missing_profile_or_config_dir_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.yaml: file not found"):
        load_train_config(profile=tmp_path / "nothere.yaml")
    with pytest.raises(ConfigError, match=r"no train\.yaml here"):
        load_train_config(config_dir=tmp_path)


def test_an_edited_config_file_is_read_again_and_a_broken_one_is_named(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(default_config_dir(), configs)
    adamw = configs / "optimizer" / "adamw.yaml"
    first = load_train_config(config_dir=configs)
    assert load_train_config(config_dir=configs) == first  # composing again changes nothing
    lr = first.optimizer.hyperparameters["lr"]
    adamw.write_text(adamw.read_text() + f"lr: {lr * 2}\n")
    assert load_train_config(config_dir=configs).optimizer.hyperparameters["lr"] == lr * 2

    edited = adamw.read_text()
    adamw.write_text("lr: [unclosed\n")
    with pytest.raises(ConfigError, match=r"adamw\.yaml: not valid YAML"):
        load_train_config(config_dir=configs)
    adamw.write_text(edited)
    (configs / "optimizer" / "broken.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: must hold a mapping"):
        load_train_config(["optimizer=broken"], config_dir=configs)
