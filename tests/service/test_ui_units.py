"""The page's pure functions, imported as the page imports them (ES modules) in Chromium:
figures with their units (format.js), the plots' scales (scales.js), the trials as the page
groups and judges them (records.js), and a job's plan and time left (compare.js). The page is
served by the app on loopback with the one Ray seam replaced: nothing here starts Ray."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from service.settings import Settings
from tests.service.live_server import app_in_thread, free_port
from tests.service.recording_ray import RecordingRay

pytestmark = pytest.mark.slow  # a browser


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("state"), api_token=SecretStr("t"), port=free_port()
    )
    with app_in_thread(settings, RecordingRay()) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}/ui/")
        yield page
        context.close()


def call(page, module: str, function: str, *args: Any) -> Any:
    """``function(...args)`` of ``/ui/<module>``, in the page; its answer as JSON."""
    script = "async ([module, name, args]) => (await import(`/ui/${module}`))[name](...args)"
    return page.evaluate(script, [module, function, list(args)])


@pytest.mark.parametrize(
    ("function", "args", "shown"),
    [
        ("seconds", [45], "45 s"),
        ("seconds", [600], "10.0 min"),
        ("seconds", [7200], "2.0 h"),
        ("bytes", [512], "512 B"),
        ("bytes", [1536], "1.5 KiB"),
        ("bytes", [3 * 2**30], "3.0 GiB"),
        ("figure", [1938.4], "1,938"),
        ("figure", [0.30249], "0.302"),
        ("figure", [0.00012], "1.2e-4"),
        ("figure", [None], ""),
        ("loss", [0.738712], "0.7387"),
        ("minutes", [20], "20 min"),
        ("minutes", [200], "3.33 h"),
        ("plural", [1, "trial"], "1 trial"),
        ("plural", [3, "trial"], "3 trials"),
        ("shownValue", [2**30, "bytes"], "1.0 GiB"),
        ("shownValue", [1234.6, "count"], "1,235"),
        ("shownValue", [True, "yes/no"], "yes"),
        ("shownValue", [[1, 2], "figure"], "[1,2]"),
        (
            "modelWords",
            [{"hidden_channels": 16, "num_layers": 1, "num_heads": 2, "num_rbf": 8, "cutoff": 5}],
            "16 channels \u00d7 1 layer, 2 heads, 8 RBF, cutoff 5 \u00c5",
        ),
        (
            "progressText",
            [{"prototyping": {"fit": {"done": 2, "total": 4, "running": 1}}}],
            "prototyping fit: 2/4 (+1 running)",
        ),
    ],
)
def test_a_figure_is_written_with_its_unit(page, function, args, shown):
    assert call(page, "format.js", function, *args) == shown


def test_an_axis_has_round_ticks_that_cover_its_range(page):
    assert call(page, "scales.js", "niceStep", 7, 5) == 2
    assert call(page, "scales.js", "niceStep", 0.07, 5) == pytest.approx(0.02)
    script = (
        "async ([lo, hi, options]) => { const { axis } = await import('/ui/scales.js');"
        " const map = axis(lo, hi, 0, 100, options);"
        " return { ticks: [...map.ticks], labels: map.ticks.map(map.label),"
        " ends: [map(map.ticks[0]), map(map.ticks.at(-1))] }; }"
    )
    linear = page.evaluate(script, [0, 97, {}])
    assert linear["ticks"] == [0, 20, 40, 60, 80, 100]
    assert linear["ends"] == [0, 100]
    fine = page.evaluate(script, [0.71, 0.78, {"parts": 4}])
    assert fine["labels"][:2] == ["0.70", "0.72"]  # the digits the step needs, no more
    epochs = page.evaluate(script, [1, 3, {"integer": True}])
    assert epochs["ticks"] == [1, 2, 3]  # a step of 0.5 would cover it: epochs are whole
    assert page.evaluate(script, [1, 7, {"integer": True}])["ticks"] == [0, 2, 4, 6, 8]
    log = page.evaluate(script, [800, 6_000, {"log": True}])
    assert log["ticks"] == [1000, 2000, 5000] and log["labels"][0] == "1,000"
    wide = page.evaluate(script, [800, 60_000, {"log": True}])
    assert wide["ticks"] == [1000, 10000]  # over two decades: powers of ten alone


ROWS = [
    {
        "stage": "production",
        "search": "tune",
        "trial_id": "a",
        "status": "completed",
        "variable": "result.val_loss",
        "value": 0.9,
    },
    {
        "stage": "production",
        "search": "tune",
        "trial_id": "a",
        "status": "completed",
        "variable": "tune.lr_factor",
        "value": 1.0,
    },
    {
        "stage": "production",
        "search": "tune",
        "trial_id": "b",
        "status": "stopped_early",
        "variable": "result.val_loss",
        "value": 0.5,
    },
    {
        "stage": "production",
        "search": "tune",
        "trial_id": "b",
        "status": "stopped_early",
        "variable": "tune.lr_factor",
        "value": 2.0,
    },
]


def test_trials_are_grouped_and_the_chosen_one_is_the_jobs(page):
    script = (
        "async (rows) => { const r = await import('/ui/records.js');"
        " const trials = r.groupTrials(rows);"
        " return { trials, chosen: r.chosenTune(trials).trial_id,"
        " varied: r.variedKnobs(trials, 'tune.') }; }"
    )
    answer = page.evaluate(script, ROWS)
    assert [t["trial_id"] for t in answer["trials"]] == ["a", "b"]
    assert answer["trials"][1]["v"] == {"result.val_loss": 0.5, "tune.lr_factor": 2.0}
    # a trial that ran every epoch before a lower loss ASHA stopped: the rule the job chose by
    assert answer["chosen"] == "a"
    assert answer["varied"] == ["tune.lr_factor"]


def test_a_pruned_model_is_placed_at_its_count_or_the_model_it_dominates(page):
    probed = {"status": "probed", "v": {"model.hidden_channels": 16, "probe.capacity": 11732}}
    counted = {"status": "pruned", "v": {"pruned.capacity": 52000}}
    dominating = {"status": "pruned", "v": {"pruned_by.hidden_channels": 16}}
    unknown = {"status": "pruned", "v": {"pruned.bound": 3.0, "pruned.best": 4.0}}
    trials = (counted, dominating, unknown)
    places = [call(page, "records.js", "prunedCapacity", t, [probed]) for t in trials]
    assert places == [52000, 11732, None]
    assert call(page, "records.js", "prunedWhy", unknown) == (
        "its score can be at most 3, below the best found, 4"
    )


def test_the_time_left_comes_from_the_pace_of_the_trials_so_far(page):
    job = {
        "state": "running",
        "elapsed_seconds": 60,
        "options": {"preset": "quick", "stages": ["prototyping", "production"]},
        "progress": {
            "prototyping": {"fit": {"total": 2, "done": 2}, "tune": {"total": 3, "done": 1}}
        },
    }
    choices = {"presets": {"quick": {"fit_trials": 2, "tune_trials": 3}}}
    plan = call(page, "compare.js", "jobPlan", job, choices)
    assert plan == {"stages": ["prototyping", "production"], "fit": 2, "tune": 3}
    left = call(page, "compare.js", "timeLeft", job, plan)
    # 3 trials in 60 s: 20 s each; 2 left in prototyping, 5 in production
    assert left["seconds"] == pytest.approx(140)
    assert left["stages"]["prototyping"] == {"left": 2, "until": pytest.approx(40)}
    assert left["stages"]["production"] == {"left": 5, "until": pytest.approx(140)}


def test_a_search_table_has_the_columns_the_service_names_that_its_trials_have(page):
    """The measured columns come from the service (``GET /choices``, ``TRIAL_COLUMNS``): the
    page keeps no list of its own."""
    script = (
        "async (trials) => { const { columnsOf } = await import('/ui/trials.js');"
        " const choices = await (await fetch('/choices',"
        " { headers: { Authorization: 'Bearer t' } })).json();"
        " return columnsOf(trials, 'tune', choices.trial_columns.tune); }"
    )
    completed = {"status": "completed"}
    trials = [
        {**completed, "trial_id": "a", "v": {"tune.lr_factor": 1.0, "result.val_loss": 0.9}},
        {**completed, "trial_id": "b", "v": {"tune.lr_factor": 2.0, "result.val_rmse": 1.1}},
    ]
    columns = page.evaluate(script, trials)
    assert columns == [
        ["trial_id", "trial", "text"],
        ["status", "status", "text"],
        ["tune.lr_factor", "lr_factor", "figure"],
        ["result.val_loss", "validation loss (MSE)", "loss"],
        ["result.val_rmse", "validation RMSE", "figure"],
    ]  # the epochs and Pearson r: no trial has them


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.00213490408123269, "0.0021349"),
        (1.3172331938101032e-06, "0.00000131723"),
        (0.5, "0.5"),
        (64, "64"),
        ("cosine", "cosine"),
        (None, "null"),
    ],
)
def test_the_editor_shows_a_long_number_rounded(page, value, shown):
    assert call(page, "editor.js", "rounded", value) == shown
