"""The results page in a real headless Chromium (Debian's package, driven by Playwright) against
``stagetune serve`` on loopback with a real finished job of the three stages: compare them side by
side, sort their trials, open one's configuration, edit a cell, see an invalid value refused, save
a profile, download it, and train with it (from the command line, and as a Ray job started from
the page); follow a running job.

``STAGETUNE_SCREENSHOTS=<folder>`` keeps a screenshot of each page there (docs/ holds them).
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stagetune_api import Best
from tests.service.live_server import TOKEN, Server

pytestmark = pytest.mark.slow  # a browser against `stagetune serve` and its own Ray head

JOB = {
    "preset": "quick",
    "fit_trials": 2,
    "tune_trials": 3,
    "max_epochs": 2,
    "grace_period": 1,
    "reduction_factor": 2,
}
STAGES = ("prototyping", "validation", "production")


@pytest.fixture(scope="module")
def server(tmp_path_factory, pdbbind_mini):
    with Server(tmp_path_factory.mktemp("ui"), pdbbind_mini.parent) as server:
        yield server


@pytest.fixture(scope="module")
def finished_job(server) -> str:
    status, job = server.call("POST", "/optimize", JOB)
    assert status == 202, job
    done = server.wait(job["job_id"], {"succeeded", "failed"}, timeout=400)
    assert done["state"] == "succeeded", done
    return str(job["job_id"])


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors  # no script error on any page


def screenshot(page, name: str, full_page: bool = True) -> None:
    """The whole page, or what the 1400x1000 window shows (``full_page=False``)."""
    folder = os.environ.get("STAGETUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"ui-{name}.png"), full_page=full_page)


def sign_in(page, server, where: str, token: str = TOKEN) -> None:
    page.goto(f"{server.url}/ui/{where}")
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")


def test_the_page_asks_for_the_token_and_refuses_a_wrong_one(page, server):
    sign_in(page, server, "#/", token="wrong")
    problem = page.locator("#token-problem")
    problem.wait_for()
    assert "refused" in problem.inner_text()
    assert page.locator("#jobs tbody tr").count() == 0  # nothing was shown without the token


def test_a_first_visit_asks_for_the_token_before_any_request_is_refused(page, server):
    """Opened without a token, the page asks for it before sending a request the service would
    refuse: the browser's console shows no failed request."""
    failed: list[str] = []
    page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{server.url}/ui/#/")
    page.locator("#token-dialog[open]").wait_for()
    page.wait_for_load_state("networkidle")
    assert failed == []
    page.fill("#token", TOKEN)
    page.click("#token-form button[type=submit]")
    page.locator("#jobs").wait_for()  # once given, the view is shown
    assert failed == []


def test_the_three_stages_side_by_side_in_one_screen(page, server, finished_job):
    sign_in(page, server, f"#/jobs/{finished_job}")
    table = page.locator("table#stages")
    table.locator("button.open-config").first.wait_for()
    result = server.call("GET", f"/jobs/{finished_job}/result")[1]["stages"]
    assert [h.inner_text().lower() for h in table.locator("thead th[data-stage]").all()] == list(
        STAGES
    )
    box = table.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 1000  # no scrolling at 1400x1000
    for stage in STAGES:
        answer = result[stage]
        column = {
            row: table.locator(f'tr[data-row="{row}"] td[data-stage="{stage}"]').inner_text()
            for row in ("model", "batch", "atoms", "memory", "cycle", "throughput", "validation")
        }
        model = answer["model"]
        assert f"{model['hidden_channels']} channels" in column["model"]
        assert f"{answer['probe']['capacity']:,} parameters" in column["model"]
        assert f"{answer['batch_size']} complexes" in column["batch"]
        assert f"{answer['batching']['max_atoms_per_batch']:,} atoms" in column["atoms"]
        assert "MiB of" in column["memory"] and "%" in column["memory"]
        allowed = answer["budget"]["minutes_allowed"]
        assert (f"of {allowed:g} min allowed" if allowed else "no time limit") in column["cycle"]
        assert "complexes/s on the job's data" in column["throughput"]
        # the validation figure is the chosen answer's, to the digits the job's log writes
        assert f"loss {answer['validation']['val_loss']:.4f} (MSE)" in column["validation"]
    screenshot(page, "job", full_page=False)

    # every trial of a search in a table, sorted by a click on a heading
    page.click('button.open-trials[data-stage="production"]')
    fit = page.locator('section.stage[data-stage="production"] table.fit-trials')
    fit.wait_for()
    assert (
        fit.locator("tbody tr").count()
        == result["production"]["probed"] + result["production"]["pruned"]
    )
    fit.locator('button.sort[data-key="probe.capacity"]').click()
    ascending = [
        int(t.replace(",", ""))
        for t in fit.locator("tbody tr td:nth-child(5)").all_inner_texts()
        if t
    ]
    assert ascending == sorted(ascending) and len(ascending) == result["production"]["probed"]
    fit.locator('button.sort[data-key="probe.capacity"]').click()
    descending = [
        int(t.replace(",", ""))
        for t in fit.locator("tbody tr td:nth-child(5)").all_inner_texts()
        if t
    ]
    assert descending == sorted(ascending, reverse=True)
    assert "(chosen)" in fit.locator("tr.chosen").inner_text()
    # the plots: readable ticks (round numbers, whole epochs) and every trial drawn
    tune_plot = page.locator('section.stage[data-stage="production"] svg.tune-plot')
    epochs = tune_plot.locator("text.x-tick").all_text_contents()
    assert epochs and all(e.isdigit() for e in epochs), epochs
    for plot in ("fit-plot", "tune-plot"):
        for axis in ("x-tick", "y-tick"):
            labels = page.locator(
                f'section.stage[data-stage="production"] svg.{plot} text.{axis}'
            ).all_text_contents()
            assert labels and round_ticks(labels), (plot, axis, labels)
    screenshot(page, "job-trials")


def round_ticks(labels: list[str]) -> bool:
    """Ticks at round numbers: a linear axis steps by 1, 2 or 5 x 10^k, each label with no more
    decimals than the step has; a log axis marks 1, 2 and 5 x 10^k."""
    values = [float(label.replace(",", "")) for label in labels]
    gaps = {round(b - a, 12) for a, b in itertools.pairwise(values)}
    if len(gaps) == 1:
        step = gaps.pop()
        power = math.floor(math.log10(step))
        decimals = max(0, -power)
        return round(step / 10**power, 6) in (1, 2, 5) and all(
            len(label.partition(".")[2]) <= decimals for label in labels
        )
    return all(round(v / 10 ** math.floor(math.log10(v)), 6) in (1, 2, 5) for v in values if v)


def test_edit_refuse_save_download_and_train(page, server, finished_job, tmp_path):
    sign_in(page, server, "#/profiles")  # none saved yet: the list says how to make one
    assert "No saved profiles yet" in page.locator("#profiles tr.empty").inner_text()
    page.goto(f"{server.url}/ui/#/jobs/{finished_job}")
    page.click('button.open-config[data-stage="prototyping"]')  # one click from the comparison
    stage = page.locator("section.stage[data-stage=prototyping]")
    lr = stage.locator('tr[data-key="optimizer.lr"]')
    lr.wait_for()
    save = stage.locator("button.save-profile")

    # every variable of the stage's configuration is on the page
    result = server.call("GET", f"/jobs/{finished_job}/result")[1]["stages"]["prototyping"]
    batch = stage.locator('tr[data-key="train.batch_size"] input')
    assert batch.input_value() == str(result["batch_size"])
    for key in (
        "model.hidden_channels",
        "optimizer.lookahead.enabled",
        "scheduler.name",
        "data.max_atoms",
        "train.epochs",
    ):
        assert stage.locator(f'tr[data-key="{key}"] input').count() == 1, key
    # a yes/no is a checkbox; a long number is shown rounded, its exact value kept
    lookahead = stage.locator('tr[data-key="optimizer.lookahead.enabled"] input[type=checkbox]')
    assert lookahead.count() == 1
    assert lookahead.is_checked() == result["optimizer"]["lookahead"]["enabled"]
    reduce = stage.locator('tr[data-key="model.reduce_op"] select')  # a fixed set: a choice
    assert reduce.locator("option").all_inner_texts() == ["sum", "mean"]
    assert reduce.input_value() == result["model"]["reduce_op"]
    decay = stage.locator('tr[data-key="optimizer.weight_decay"] input').input_value()
    assert len(decay.replace("e-", "").replace(".", "").lstrip("0")) <= 8, decay

    # the plots: every probe of the fit search, the chosen point, every trial of the tune search
    fit = stage.locator("svg.fit-plot")
    assert fit.locator("circle.chosen").count() == 1
    assert fit.locator("circle.feasible, rect.infeasible").count() == result["probed"]
    assert fit.locator("path.pruned").count() == result["pruned"]
    tune = stage.locator("svg.tune-plot")
    assert tune.locator("polyline").count() == result["validation"]["trials"]
    assert tune.locator("polyline.stopped").count() == result["validation"]["stopped_early"]

    # an invalid value is shown as such next to its cell and cannot be saved
    lr.locator("input").fill("fast")
    page.wait_for_selector('tr[data-key="optimizer.lr"].invalid')
    assert "must be a number" in lr.locator("td.problem").inner_text()
    assert save.is_disabled()
    screenshot(page, "invalid-cell")
    status, refused = server.call(
        "PUT", "/profiles/proto-edited", {"config": {"optimizer": {"lr": "fast"}}}
    )
    assert status == 422 and refused["problems"][0]["key"] == "optimizer.lr"
    assert server.call("GET", "/profiles")[1]["profiles"] == []  # the API refuses it too

    # a valid edit is saved as a named, versioned profile
    lr.locator("input").fill("0.002")
    stage.locator('tr[data-key="train.epochs"] input').fill("1")
    reduce.select_option("sum")
    page.wait_for_selector('tr[data-key="optimizer.lr"]:not(.invalid)')
    page.wait_for_function(
        "!document.querySelector('section.stage[data-stage=prototyping] button.save-profile')"
        ".disabled"
    )
    stage.locator("input[name=profile-name]").fill("proto-edited")
    save.click()
    saved = stage.locator(".saved-profile")
    saved.wait_for()
    assert saved.get_attribute("data-version") == "1"
    assert "stagetune train --profile proto-edited-v1.yaml" in saved.locator("pre").inner_text()
    screenshot(page, "saved")

    # downloaded, it is the YAML that `stagetune train --profile` accepts
    with page.expect_download() as download:
        saved.locator("button.download").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "proto-edited-v1.yaml"
    profile = yaml.safe_load(path.read_text())
    assert profile["optimizer"]["lr"] == 0.002 and profile["train"]["epochs"] == 1
    assert profile["optimizer"]["weight_decay"] == result["optimizer"]["weight_decay"]  # exact
    assert profile["model"]["reduce_op"] == "sum"  # the choice made
    assert (
        profile["optimizer"]["lookahead"]["enabled"] == result["optimizer"]["lookahead"]["enabled"]
    )
    assert profile["meta"]["job_id"] == finished_job
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "train",
            "--profile",
            str(path),
            "--json",
            "--output",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "val_rmse" in trained.stdout

    # saving the same configuration again is no new version; a changed one is version 2
    save.click()
    page.wait_for_selector(".saved-profile >> text=Unchanged since")
    stage.locator('tr[data-key="optimizer.lr"] input').fill("0.003")
    page.wait_for_function(
        "!document.querySelector('section.stage[data-stage=prototyping] button.save-profile')"
        ".disabled"
    )
    save.click()
    page.wait_for_selector('.saved-profile[data-version="2"]')

    # "Train with it": a training run of version 2 on Ray, followed on its job page
    stage.locator(".saved-profile button.train").click()
    page.wait_for_url(lambda url: "#/jobs/" in url and finished_job not in url)
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#job-state [data-state=succeeded]", timeout=300_000)
    report = page.locator("section.report")
    report.wait_for()
    assert report.locator("table.epochs tbody tr").count() == 1  # train.epochs=1 of the edit
    run = server.call("GET", f"/jobs/{run_id}")[1]
    assert run["kind"] == "train" and run["options"] == {"profile": "proto-edited", "version": 2}
    rmse = server.call("GET", f"/jobs/{run_id}/result")[1]["epochs"][-1]["val_rmse"]
    assert f"{rmse:.4g}"[:4] in report.inner_text()
    screenshot(page, "training-run")

    page.goto(f"{server.url}/ui/#/profiles")
    row = page.locator('#profiles tr[data-profile="proto-edited"]')
    row.wait_for()
    assert "v2 (2 saved)" in row.inner_text()
    screenshot(page, "profiles")


def test_the_jobs_page_follows_jobs_and_starts_one_from_the_form(page, server, finished_job):
    sign_in(page, server, "#/")
    row = page.locator(f'#jobs tr[data-job="{finished_job}"]')
    row.wait_for()
    assert row.locator("[data-state]").get_attribute("data-state") == "succeeded"
    screenshot(page, "jobs")

    form = page.locator("#new-job")
    form.locator("input[name=data]").fill("/etc")
    form.locator("button[type=submit]").click()
    problem = page.locator("#new-job-problem")
    page.wait_for_function("document.querySelector('#new-job-problem').textContent.length > 0")
    assert "data: /etc is outside the data roots" in problem.inner_text()  # the API's rules
    form.locator("input[name=data]").fill("synthetic")

    form.locator("input[name=stages][value=validation]").uncheck()
    form.locator("input[name=fit_trials]").fill("1")
    form.locator("input[name=tune]").uncheck()
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/ui/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#job-state [data-state]")
    status, job = server.call("GET", f"/jobs/{job_id}")
    assert status == 200
    assert job["options"]["stages"] == ["prototyping", "production"]
    assert job["options"]["fit_trials"] == 1 and job["options"]["tune"] is False
    # live: both stages listed from the start, the one not started yet as such
    page.wait_for_selector('#stages th[data-stage="production"]')
    if page.locator("#time-left").count():  # still running at the first look
        assert "Time left:" in page.locator("#time-left").inner_text()
        assert page.locator('tr[data-row="tune"] td[data-stage="production"]').inner_text() == (
            "off: hardware-only answer"
        )
        # once a trial has finished (unless the job ended first), the time left is estimated
        page.wait_for_function(
            "() => !document.querySelector('#time-left')"
            " || document.querySelector('#time-left').textContent.includes('about')",
            timeout=120_000,
        )
        if page.locator("#time-left").count():
            screenshot(page, "job-live", full_page=False)
    # the page follows it live to its end
    page.wait_for_selector("#job-state [data-state=succeeded]", timeout=300_000)


RUNNING = {
    "state": "running",
    "elapsed_seconds": 60,
    "options": {"preset": "quick", "fit_trials": 2},
    "progress": {
        "prototyping": {
            "fit": {
                "total": 2,
                "done": 2,
                "best": Best(
                    config={"hidden_channels": 8, "num_layers": 1},
                    metric="score",
                    value=1938.4,
                    unit="complexes/s",
                    goal="max",
                ).model_dump(mode="json"),
            },
            "tune": {
                "total": 3,
                "done": 1,
                "running": 2,
                "best": Best(
                    config={"pair": "a", "optimizer.lr": 1e-3},
                    metric="val_loss",
                    value=0.73871,
                    unit="MSE",
                    goal="min",
                ).model_dump(mode="json"),
            },
        }
    },
}


def test_a_running_job_lists_every_stage_with_the_time_left(page, server):
    """The page's live view of a job's progress (what GET /jobs/{id} says while it runs): 3
    trials in 60 s, 12 to go (the quick preset runs 4 tune trials a stage, 3 here as started)."""
    sign_in(page, server, "#/profiles")
    page.wait_for_selector("#profiles")
    page.evaluate(
        "async (job) => { const choices = {presets: {quick: {tune_trials: 3}}};"
        " const { progressView } = await import('/ui/compare.js');"
        " const { view } = await import('/ui/page.js');"
        " view.replaceChildren(...progressView(job, choices).filter(Boolean)); }",
        RUNNING,
    )
    cell = lambda row, stage: page.locator(f'tr[data-row="{row}"] td[data-stage="{stage}"]')  # noqa: E731
    assert page.locator("#time-left").inner_text().startswith("Time left: about 4.0 min")
    assert "20 s" in page.locator("#time-left").inner_text()  # the basis: one trial every 20 s
    assert cell("state", "prototyping").inner_text() == "running"
    assert cell("state", "production").inner_text() == "not started"
    assert "ends in about 40 s" in cell("left", "prototyping").inner_text()
    assert "ends in about 4.0 min" in cell("left", "production").inner_text()
    assert "8 channels \u00d7 1 layer: 1,938 complexes/s" in cell("fit", "prototyping").inner_text()
    tune = cell("tune", "prototyping").inner_text()
    assert "lowest validation loss so far, of any finished trial" in tune and "0.7387 MSE" in tune


def test_a_best_so_far_in_words_from_an_earlier_version_is_shown_as_it_was_written(page, server):
    sign_in(page, server, "#/profiles")
    page.wait_for_selector("#profiles")
    words = "hidden_channels=8 num_layers=1 score 1,938.4 complexes/s"
    job = {**RUNNING, "progress": {"prototyping": {"fit": {"total": 2, "done": 2, "best": words}}}}
    page.evaluate(
        "async (job) => { const choices = {presets: {quick: {tune_trials: 3}}};"
        " const { progressView } = await import('/ui/compare.js');"
        " const { view } = await import('/ui/page.js');"
        " view.replaceChildren(...progressView(job, choices).filter(Boolean)); }",
        job,
    )
    fit = page.locator('tr[data-row="fit"] td[data-stage="prototyping"]').inner_text()
    assert f"best so far: {words}" in fit


def test_a_pruned_configuration_is_drawn_as_pruned(page, server):
    sign_in(page, server, "#/profiles")
    page.wait_for_selector("#profiles")
    probed = lambda channels, capacity, fits: {  # noqa: E731
        "stage": "production",
        "search": "fit",
        "trial_id": f"t{channels}",
        "status": "probed",
        "v": {
            "model.hidden_channels": channels,
            "model.num_layers": 2,
            "probe.capacity": capacity,
            "probe.fits": fits,
            "probe.feasible": fits,
            "probe.throughput": 150.0 if fits else 0,
            "probe.max_batch_size": 8 if fits else 0,
        },
    }
    pruned = {
        "stage": "production",
        "search": "fit",
        "trial_id": "pruned-32-3",
        "status": "pruned",
        "v": {
            "model.hidden_channels": 32,
            "model.num_layers": 3,
            "pruned_by.hidden_channels": 16,
            "pruned_by.num_layers": 2,
        },
    }
    drawn = page.evaluate(
        "async (trials) => { const { fitPlot } = await import('/ui/plots.js');"
        " const figure = fitPlot(trials, {batch_size: 8, probe: null});"
        " return [...figure.querySelectorAll('path.pruned title')].map((t) => t.textContent); }",
        [probed(8, 2440, True), probed(16, 11732, False), pruned],
    )
    assert len(drawn) == 1
    assert "dominates hidden_channels 16, num_layers 2, which did not fit" in drawn[0]
    assert "at least 11,732 parameters" in drawn[0]
