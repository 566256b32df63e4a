"""Composing configs/ with profiles and overrides, and the errors a user sees; the optimizer
contract's keys, and configurations written before them (their hashes do not change)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from model import (
    ConfigError,
    default_config_dir,
    group_choices,
    load_train_config,
    parse_override,
    split_sweep,
)


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
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
    }
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
        (
            ["optimizer=adamx"],
            "optimizer=adamx: unknown optimizer .*choose one of: adafactor, "
            "adam, adamw, rmsprop, sgd",
        ),
        (["scheduler=linear"], "choose one of: cosine, none, onecycle"),
        (
            ["model.hidden_chanels=64"],
            r"model.hidden_chanels: unknown key \(did you mean "
            r"'hidden_channels'\?\) \(command line 'model.hidden_chanels=64'\); accepted keys: ",
        ),
        (["model.hidden_channels=abc"], r"model.hidden_channels: .*integer.*'abc'"),
        (["model.hidden_channels=0"], r"model.hidden_channels: .*greater than 0"),
        (["train.precision=fp8"], r"train.precision: .*'auto', 'fp32', 'bf16' or 'fp16'"),
        (["train.device=tpu"], r"device 'tpu': use auto, cpu, cuda or cuda:N"),
        (["model.hidden_channels=36"], r"hidden_channels=36 must be a multiple of num_heads=8"),
        (
            ["optimizer.lrr=0.1"],
            r"optimizer.lrr: unknown key \(did you mean 'lr'\?\); accepted: "
            r"the contract keys and torch.optim.AdamW's arguments: .*\bamsgrad\b",
        ),
        (["optimizer.lr=fast"], r"optimizer.lr: must be a number \(got 'fast'\) \(command line"),
        (["optimizer.betas=[0.9]"], r"optimizer.betas: must be a list of 2 values"),
        (["optimizer.amsgrad=3"], r"optimizer.amsgrad: must be true or false \(got 3\)"),
        (
            ["optimizer.type=Adamx"],
            r"optimizer.type: 'Adamx' is not a torch.optim optimizer; "
            r"choose one of: .*AdamW",
        ),
        (["optimizer.lookahead.alpha=2"], r"optimizer.lookahead.alpha: .*less than or equal to 1"),
        (["optimizer.type=LBFGS"], r"'LBFGS' cannot train this model: it needs a closure"),
        (["data.source={x: 1}"], r"data.source: .*valid string.*\(command line 'data.source="),
        (
            ["foo.bar=1"],
            r"foo: unknown key .*accepted keys: data, model, optimizer, scheduler, "
            r"train",
        ),
        (["model.hidden_channels.x=1"], r"model.hidden_channels is a value, not a section"),
        (["hidden_channels"], r"'hidden_channels' is not KEY=VALUE"),
        (["model.cutoff=[1"], r"override 'model.cutoff=\[1': not valid YAML"),
    ],
)
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


# --- the contract's remaining keys; what was written before them ------------------------------

OLD_JOB = Path(__file__).resolve().parents[1] / "data" / "old-job"

#: configs/optimizer/adamw.yaml as it was before auto_param_groups had fields and before
#: hash_to_debuglog: such files must compose to the same configuration and hash.
OLD_ADAMW = """\
name: adamw
type: AdamW
lr: 5.0e-4
betas: [0.9, 0.999]
eps: 1.0e-8
weight_decay: 0.01
auto_param_groups: true
lookahead: {enabled: false, alpha: 0.5, k: 5}
scheduler_hook: step
warmup_steps: 100
clip_grad_norm: 10.0
accumulate_steps: 1
precision_safe: true
bf16_preferred: true
fused: true
detect_anomaly: false
log_config: true
export_json: true
"""

#: Hashes published by earlier versions (run folders, audit.md, result.json name them).
PUBLISHED = [
    ([], "931137d08c6b10d3fd9253da5fdbf2b1fa31be3dcae8c8dd8348fdf6d0cd1256"),
    (
        ["optimizer=sgd", "scheduler=onecycle"],
        "d3ce646b73c3119279693fc506ae9d748fba195e3cf825ffa53b2af31f4d5152",
    ),
    (
        ["optimizer=rmsprop", "scheduler=none"],
        "f470326e2c99aca33a81a95ef8026ee0cbf32f4a9c6942066d7a8e2fde31fd45",
    ),
    (["optimizer=adafactor"], "086d5f3948288b77f761b5c8f97c913286101f877d30b9878ebca76e2358399c"),
    (
        ["optimizer=adam", "train.max_atoms_per_batch=900"],
        "1cb31d66ad658141d01ff2bcdd5d1cfe776342a5e99b1cddb819f2ad37c56cca",
    ),
    (
        ["optimizer.auto_param_groups=false", "optimizer.export_json=false"],
        "e99bddbf3641f782f12beef194e280232c458f26e8aa9d1509f933ad50d5b188",
    ),
]


@pytest.mark.parametrize(("overrides", "digest"), PUBLISHED)
def test_published_configuration_hashes_do_not_change(overrides, digest):
    assert load_train_config(overrides).digest() == digest


def test_the_quick_profile_and_an_old_jobs_profiles_load_unchanged():
    quick = load_train_config(profile=default_config_dir() / "profiles" / "quick.yaml")
    assert quick.digest() == "155d4ec56e998e11c5f61677b3a0beb554db06ba4013fbc8048514777e0ab072"
    result = json.loads((OLD_JOB / "result.json").read_text())
    for stage in ("prototyping", "production"):
        path = OLD_JOB / "profiles" / f"{stage}.yaml"
        config = load_train_config(profile=path)
        assert config.digest() == result["stages"][stage]["config_hash"]
        written = yaml.safe_load(path.read_text())
        loaded = config.to_dict()
        for section in ("model", "optimizer", "scheduler", "data", "train"):
            for key, value in written[section].items():
                assert loaded[section][key] == value, f"{section}.{key}"
        assert loaded["optimizer"]["auto_param_groups"] is True  # still written the old way


def test_an_old_style_optimizer_file_composes_as_the_new_one(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(default_config_dir(), configs)
    (configs / "optimizer" / "adamw.yaml").write_text(OLD_ADAMW)
    old = load_train_config(config_dir=configs)
    assert old == load_train_config() and old.digest() == PUBLISHED[0][1]
    # a bare switch opens up for a dotted override of its fields
    off = load_train_config(["optimizer.auto_param_groups.enabled=false"], config_dir=configs)
    assert off.optimizer.auto_param_groups.enabled is False
    assert off.digest() == load_train_config(["optimizer.auto_param_groups=false"]).digest()


def test_auto_param_groups_takes_a_switch_or_its_fields():
    config = load_train_config(
        [
            "optimizer.auto_param_groups.no_decay_patterns=['*embedding*']",
            "optimizer.auto_param_groups.override_no_decay_weight=1e-5",
        ]
    )
    groups = config.optimizer.auto_param_groups
    assert groups.enabled and groups.no_decay_patterns == ("*embedding*",)
    assert config.to_dict()["optimizer"]["auto_param_groups"] == {
        "enabled": True,
        "no_decay_patterns": ["*embedding*"],
        "override_no_decay_weight": 1e-5,
    }
    assert config.digest() != PUBLISHED[0][1]
    with pytest.raises(
        ConfigError,
        match=r"optimizer.auto_param_groups.patterns: unknown key "
        r"\(did you mean 'no_decay_patterns'\?\)",
    ):
        load_train_config(["optimizer.auto_param_groups.patterns=['x']"])
    with pytest.raises(ConfigError, match=r"override_no_decay_weight: .*greater than or equal"):
        load_train_config(["optimizer.auto_param_groups.override_no_decay_weight=-1"])


def test_export_json_and_hash_to_debuglog():
    assert load_train_config(["optimizer.export_json=exports/"]).optimizer.export_json == "exports/"
    for wrong in ("''", "3"):
        with pytest.raises(
            ConfigError,
            match=r"optimizer.export_json: must be true \(config.json "
            r"in the run folder\), false, or a path",
        ):
            load_train_config([f"optimizer.export_json={wrong}"])
    quiet = load_train_config(["optimizer.hash_to_debuglog=false"])
    assert load_train_config(["optimizer.hash_to_debuglog=true"]).digest() == PUBLISHED[0][1]
    assert quiet.digest() != PUBLISHED[0][1]


@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("optimizer=adamw,adam,sgd", "optimizer", ["adamw", "adam", "sgd"]),
        ("optimizer.lr=1e-4,3e-4", "optimizer.lr", ["1e-4", "3e-4"]),
        ("optimizer.betas=[0.9,0.95]", "optimizer.betas", ["[0.9,0.95]"]),
        ("optimizer.betas=[0.9,0.95],[0.8, 0.9]", "optimizer.betas", ["[0.9,0.95]", "[0.8, 0.9]"]),
        ("data.source='a,b'", "data.source", ["'a,b'"]),
        ('data.source="a,b",c', "data.source", ['"a,b"', "c"]),
        ("model.x={a: 1, b: 2},{a: 3}", "model.x", ["{a: 1, b: 2}", "{a: 3}"]),
        ("optimizer.lr=0.01", "optimizer.lr", ["0.01"]),
        ("data.source=", "data.source", [""]),
    ],
)
def test_a_sweep_splits_on_commas_outside_brackets_and_quotes(text, key, values):
    assert split_sweep(text) == (key, values)
    for value in values:  # each value is an override as the command line reads one
        assert parse_override(f"{key}={value}")[0] == key
