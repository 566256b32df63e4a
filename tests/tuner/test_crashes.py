"""A fit search whose trials crashed answers nothing and says why; one whose trials ran out of
memory, or probed, is judged by the stage's policy as before."""

from __future__ import annotations

from stagetune_api import Search, Stage, TrialRecord, TrialStatus
from tuner._fit import FitOutcome, crash_of, error_line


def record(status: TrialStatus, error: str | None = None) -> TrialRecord:
    variables = {} if error is None else {"trial.error": error}
    return TrialRecord(
        stage=Stage.PROTOTYPING,
        search=Search.FIT,
        trial_id=f"t{status.value}",
        status=status,
        variables=variables,
    )


def test_a_search_whose_trials_all_crashed_names_the_error():
    outcome = FitOutcome([], {}, [record(TrialStatus.ERROR, "OverflowError: int too large")])
    why = crash_of(outcome)
    assert why is not None and "OverflowError: int too large" in why and "crashed" in why


def test_trials_out_of_memory_or_none_crashed_leave_the_policy_to_answer():
    oom = "ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory"
    assert crash_of(FitOutcome([], {}, [record(TrialStatus.ERROR, oom)])) is None
    assert crash_of(FitOutcome([], {}, [record(TrialStatus.INVALID)])) is None
    assert crash_of(FitOutcome([], {}, [])) is None


def test_a_trials_error_is_its_last_line():
    error = RuntimeError("ray::ImplicitFunc.train()\n  File x, line 1\nValueError: negative\n")
    assert error_line(error) == "ValueError: negative"
