"""The command line's job options are the contract's: one field list for the flags of
``stagetune optimize``, a ``--spec`` file and the REST body, and the trial flags of a sweep
(``stagetune train -m``)."""

from __future__ import annotations

from service.cli import _parser, main
from service.commands import NO_FLAG, job_flags
from stagetune_api import SWEEP_FIELDS, JobOptions, JobSpec


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
