"""What a job's output says while a search runs (the driver log the Ray dashboard shows): a line
when a trial starts, and a status line at each trial event and at least every 30 s, naming the
running trials and the best so far, from the same record as progress.json. Ray Tune's own
trials (stubs: no Ray needed) in the states Tune gives them."""

from __future__ import annotations

import json
import logging

import pytest
from ray.tune.experiment import Trial

from stagetune_api import Best, Progress
from tuner import _progress
from tuner._progress import ProgressBoard, SearchProgress


def trial(trial_id: str, status: str, **config: int) -> Trial:
    made = Trial("validation-fit", config=config, trial_id=trial_id, stub=True)
    made.set_status(status)
    return made


def best_of(results: list[dict]) -> Best | None:
    if not results:
        return None
    top = max(results, key=lambda r: r["score"])
    return Best(config={}, metric="score", value=top["score"], unit="complexes/s", goal="max")


@pytest.fixture
def progress(tmp_path) -> SearchProgress:
    board = ProgressBoard(tmp_path / "progress.json", started=0.0)
    board.update("validation", "fit", {"total": 4})
    return SearchProgress("validation", "fit", board, str, best_of, total=4)


def status_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if " status: " in r.getMessage()]


def test_a_trial_that_starts_is_named_running_with_what_it_tries(progress, caplog):
    caplog.set_level(logging.INFO, logger="tuner")
    first = trial("aaaa0001", Trial.PENDING, hidden_channels=64, num_layers=3)
    waiting = trial("aaaa0002", Trial.PENDING, hidden_channels=128, num_layers=4)
    progress.on_trial_start(0, [first, waiting], first)
    said = [r.getMessage() for r in caplog.records]
    assert "validation fit: trial aaaa0001 started: hidden_channels=64 num_layers=3" in said
    [line] = status_lines(caplog)
    assert "0/4 done, 1 running (aaaa0001 hidden_channels=64 num_layers=3), 1 pending" in line
    assert "best - " in line and "time left unknown until a trial finishes" in line


def test_a_finished_trial_gives_the_best_so_far_and_the_time_left(progress, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="tuner")
    now = [100.0]
    monkeypatch.setattr(_progress.time, "time", lambda: now[0])
    done = trial("aaaa0001", Trial.RUNNING, hidden_channels=64)
    done.update_last_result({"score": 812.5, "training_iteration": 1})
    running = trial("aaaa0002", Trial.RUNNING, hidden_channels=128)
    progress.on_step_end(0, [done, running])  # the search's first step: its clock starts
    now[0] = 160.0
    progress.on_trial_complete(0, [done, running], done)
    line = status_lines(caplog)[-1]
    assert "1/4 done, 1 running (aaaa0002 hidden_channels=128)" in line
    assert "best score 812.5 complexes/s" in line
    # one trial in the 60 s since the search began: three left, at most, take about 3 minutes
    assert "about 03:00 left (3 trial(s) at most)" in line
    figures = Progress.model_validate(json.loads(progress.board.path.read_text()))
    assert figures.stages["validation"]["fit"].best.value == 812.5


def test_a_status_line_comes_every_30_seconds_while_nothing_happens(progress, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="tuner")
    now = [1000.0]
    monkeypatch.setattr(_progress.time, "time", lambda: now[0])
    running = [trial("aaaa0001", Trial.RUNNING, hidden_channels=64)]
    for _ in range(121):  # a minute of Tune's steps, every half second
        progress.on_step_end(0, running)
        now[0] += 0.5
    assert len(status_lines(caplog)) == 3  # at 0, 30 and 60 s
