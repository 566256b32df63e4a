"""The command line's job options are the contract's: one field list for the flags of
``stagetune optimize``, a ``--spec`` file and the REST body."""

from __future__ import annotations

from service.cli import _parser
from service.commands import NO_FLAG, job_flags
from stagetune_api import JobOptions, JobSpec


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
        ["optimize", "--fit-trials", "3", "--gpus-per-trial", "0.5", "--stages",
         "prototyping,production", "--seed", "0", "--no-tune", "optimizer=sgd"]
    )  # fmt: skip
    assert args.fit_trials == 3 and args.gpus_per_trial == 0.5 and args.seed == 0
    assert args.stages == ["prototyping", "production"] and args.no_tune
    assert args.overrides == ["optimizer=sgd"]
