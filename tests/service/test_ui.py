"""The results page in a real headless Chromium (Debian's package, driven by Playwright) against
``stagetune serve`` on loopback with a real finished job: open it, edit a cell, see an invalid
value refused, save a profile, download it, and train with it (from the command line, and as a
Ray job started from the page).

``STAGETUNE_SCREENSHOTS=<folder>`` keeps a screenshot of each page there (docs/ holds them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import sync_playwright

from tests.service.live_server import TOKEN, Server

CHROMIUM = "/usr/bin/chromium"
JOB = {
    "preset": "quick", "stages": ["prototyping"], "fit_trials": 2, "tune_trials": 3,
    "max_epochs": 2, "grace_period": 1, "reduction_factor": 2,
}  # fmt: skip


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


@pytest.fixture(scope="module")
def browser():
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not errors, errors  # no script error on any page


def screenshot(page, name: str) -> None:
    folder = os.environ.get("STAGETUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"ui-{name}.png"), full_page=True)


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


def test_edit_refuse_save_download_and_train(page, server, finished_job, tmp_path):
    sign_in(page, server, f"#/jobs/{finished_job}")
    stage = page.locator("section.stage[data-stage=prototyping]")
    lr = stage.locator('tr[data-key="optimizer.lr"]')
    lr.wait_for()
    save = stage.locator("button.save-profile")

    # every variable of the stage's configuration is on the page, with the measured figures
    result = server.call("GET", f"/jobs/{finished_job}/result")[1]["stages"]["prototyping"]
    batch = stage.locator('tr[data-key="train.batch_size"] input')
    assert batch.input_value() == str(result["batch_size"])
    for key in ("model.hidden_channels", "optimizer.lookahead.enabled", "scheduler.name",
                "data.max_atoms", "train.epochs"):  # fmt: skip
        assert stage.locator(f'tr[data-key="{key}"] input').count() == 1, key
    assert str(result["probe"]["max_batch_size"]) in stage.locator("dl.figures").inner_text()

    # the plots: every probe of the fit search, the chosen point, every trial of the tune search
    fit = stage.locator("svg.fit-plot")
    assert fit.locator("circle.chosen").count() == 1
    assert fit.locator("circle.feasible, rect.infeasible").count() == result["probed"]
    tune = stage.locator("svg.tune-plot")
    assert tune.locator("polyline").count() == result["validation"]["trials"]
    assert tune.locator("polyline.stopped").count() == result["validation"]["stopped_early"]
    screenshot(page, "job")

    # an invalid value is shown as such next to its cell and cannot be saved
    lr.locator("input").fill("fast")
    page.wait_for_selector('tr[data-key="optimizer.lr"].invalid')
    assert "must be a number" in lr.locator("td.problem").inner_text()
    assert save.is_disabled()
    screenshot(page, "invalid-cell")
    status, refused = server.call("PUT", "/profiles/proto-edited",
                                  {"config": {"optimizer": {"lr": "fast"}}})  # fmt: skip
    assert status == 422 and refused["problems"][0]["key"] == "optimizer.lr"
    assert server.call("GET", "/profiles")[1]["profiles"] == []  # the API refuses it too

    # a valid edit is saved as a named, versioned profile
    lr.locator("input").fill("0.002")
    stage.locator('tr[data-key="train.epochs"] input').fill("1")
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
    assert profile["meta"]["job_id"] == finished_job
    trained = subprocess.run(
        [sys.executable, "-m", "service.cli", "train", "--profile", str(path), "--json",
         "--output", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
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

    for stage in ("validation", "production"):
        form.locator(f"input[name=stages][value={stage}]").uncheck()
    form.locator("input[name=fit_trials]").fill("1")
    form.locator("input[name=tune]").uncheck()
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/ui/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    page.wait_for_selector("#job-state [data-state]")
    status, job = server.call("GET", f"/jobs/{job_id}")
    assert status == 200
    assert job["options"]["stages"] == ["prototyping"] and job["options"]["fit_trials"] == 1
    assert job["options"]["tune"] is False
    # the page follows it live to its end
    page.wait_for_selector("#job-state [data-state=succeeded]", timeout=300_000)
