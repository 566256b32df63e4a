"""The command line's job options are the contract's: one field list for the flags of
``stagetune optimize``, a ``--spec`` file and the REST body, and the trial flags of a sweep
(``stagetune train -m``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.cli import _parser, main
from service.commands import NO_FLAG, job_flags
from stagetune_api import SWEEP_FIELDS, JobOptions, JobSpec
from tests.conftest import TINY


def _optimize_actions():
    commands = next(a for a in _parser()._actions if a.dest == "command")
    return {a.dest: a for a in commands.choices["optimize"]._actions}


def test_every_job_option_is_a_flag_of_optimize_with_its_description():
    actions = _optimize_actions()
    for name in job_flags():
        action = actions[name]
        assert action.option_strings == [f"--{name.replace('_', '-')}"]
        assert action.help.startswith(JobSpec.model_fields[name].description)
    assert {"overrides", "no_tune"} <= set(actions)  # NO_FLAG's fields, taken otherwise
    assert set(NO_FLAG) == {"overrides", "space", "tune"}


def test_the_rest_body_has_every_option_but_what_the_server_sets():
    assert set(JobOptions.model_fields) == set(JobSpec.model_fields) - {"job_id", "storage"}


def test_flags_parse_to_the_fields_types():
    args = _parser().parse_args(
        [
            "optimize",
            "--fit-trials",
            "3",
            "--gpus-per-trial",
            "0.5",
            "--stages",
            "prototyping,production",
            "--seed",
            "0",
            "--no-tune",
            "optimizer=sgd",
        ]
    )
    assert args.fit_trials == 3 and args.gpus_per_trial == 0.5 and args.seed == 0
    assert args.stages == ["prototyping", "production"] and args.no_tune
    assert args.overrides == ["optimizer=sgd"]


def _train_actions():
    commands = next(a for a in _parser()._actions if a.dest == "command")
    return {a.dest: a for a in commands.choices["train"]._actions}


def test_a_sweeps_trial_flags_are_the_job_options_of_optimize():
    actions, optimize = _train_actions(), _optimize_actions()
    for name in SWEEP_FIELDS:
        mine, theirs = actions[name], optimize[name]
        assert (mine.option_strings, mine.help, mine.type) == (
            theirs.option_strings,
            theirs.help,
            theirs.type,
        )
    args = _parser().parse_args(
        [
            "train",
            "-m",
            "optimizer=adamw,sgd",
            "optimizer.betas=[0.9,0.95]",
            "--asha",
            "--gpus-per-trial",
            "0.5",
            "--max-concurrent",
            "2",
            "--address",
            "auto",
        ]
    )
    assert args.multirun and args.asha and args.address == "auto"
    assert args.overrides == ["optimizer=adamw,sgd", "optimizer.betas=[0.9,0.95]"]
    assert (args.gpus_per_trial, args.max_concurrent) == (0.5, 2)


def test_train_without_m_refuses_sweep_flags_and_says_how_to_sweep(capsys, tmp_path):
    assert main(["train", "--asha", "--output", str(tmp_path)]) == 2
    assert "--asha: only a sweep takes it; add -m" in capsys.readouterr().err
    assert main(["train", "optimizer=adamw,sgd", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "optimizer=adamw,sgd: unknown optimizer" in err
    assert "(to sweep optimizer=adamw,sgd, add -m)" in err
    assert not any(tmp_path.iterdir())  # nothing trained


REFUSED_VALUES = (".nan", "1e309", "9" * 30, "{a: &a [1], b: *a}")


def test_optimize_refuses_an_override_value_the_service_refuses(capsys):
    """The command line refuses what the service does, naming the override, before any Ray."""
    from service.cli import main

    for value in REFUSED_VALUES:
        assert main(["optimize", "--preset", "quick", f"optimizer.lr={value}"]) == 2
        assert "overrides[0]: optimizer.lr" in capsys.readouterr().err


def test_train_refuses_an_override_value_the_service_refuses(capsys, tmp_path):
    """``stagetune train``, and each value of a sweep, refuse what a job's overrides may not
    hold, naming the key, before anything trains."""
    from service.cli import main

    output = ["--output", str(tmp_path)]
    for value in REFUSED_VALUES:
        assert main(["train", *output, f"optimizer.lr={value}"]) == 2
        assert "optimizer.lr: " in capsys.readouterr().err
    assert main(["train", "-m", *output, "optimizer.lr=1e-3,.inf"]) == 2
    assert "optimizer.lr: " in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing trained


def test_train_shows_its_configuration_only_when_asked(capsys, tmp_path):
    """The configuration (config.json has it) is a debug line: ``-v`` shows it, and without it
    stderr stays short enough to see a one-line error."""
    args = ["train", *TINY, "optimizer.log_config=true", "--output", str(tmp_path), "--json"]
    assert main(args) == 0
    quiet = capsys.readouterr()
    assert "configuration" not in quiet.err and '"hidden_channels"' not in quiet.err
    assert json.loads(quiet.out)["step_seconds"] > 0  # the run's median step, timed
    assert main(["-v", *args]) == 0
    assert '"hidden_channels": 16' in capsys.readouterr().err


_HEAVY = """
import sys
from service.cli import main
status = main(sys.argv[1:])
print(status, "torch" in sys.modules, "ray" in sys.modules)
"""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["optimize", "--preset", "nosuch"], "--preset nosuch: no such preset; accepted: default"),
        (["optimize", "--data", "/nosuch"], "--data /nosuch: no such folder; accepted: synthetic"),
        (["optimize", "--sample", "/nosuch"], "--sample /nosuch: no such folder"),
        (["optimize", "--spec", "/nosuch.json"], "--spec /nosuch.json: [Errno 2]"),
        (["train", "--profile", "/nosuch.yaml"], "--profile /nosuch.yaml: no such file"),
        (["train", "--data", "/nosuch"], "--data /nosuch: no such folder"),
    ],
)
def test_a_bad_preset_folder_or_file_is_one_line_before_torch_or_ray_start(args, said, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _HEAVY, *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.stdout.split() == ["2", "False", "False"]  # refused; nothing heavy imported
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagetune: error: ") and said in lines[0]


def test_an_empty_data_folder_is_refused_with_what_a_root_holds(tmp_path, capsys):
    assert main(["optimize", "--data", str(tmp_path)]) == 2
    assert "holds no folder of a complex; accepted: synthetic, or a PDBbind-style root" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["optimize", "--presets", "quick"],
            "unrecognized arguments: --presets (did you mean --preset?)",
        ),
        (["train", "--epochs", "-1"], "argument --epochs: -1 must be at least 1"),
        (["train", "--mesure-memory"], "(did you mean --measure-memory?)"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_nearest_flag(args, said, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err.split("error:")[0]  # no usage block
    assert said in err and f"(usage: stagetune {args[0]} --help)" in err
