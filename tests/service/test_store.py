"""The job store on a real SQLite file."""

import pytest

from service.store import JobState, JobStore


def test_jobs_survive_a_new_store_on_the_same_file(tmp_path):
    path = tmp_path / "state" / "jobs.sqlite"
    store = JobStore(path)
    record, new = store.create("a", {"preset": "quick"})
    assert new and record.state is JobState.QUEUED and record.options == {"preset": "quick"}
    store.update("a", state=JobState.RUNNING, submission_id="stagetune-a", started=1.0)
    again = JobStore(path).get("a")
    assert again is not None
    assert again.state is JobState.RUNNING
    assert (again.submission_id, again.started) == ("stagetune-a", 1.0)


def test_an_idempotency_key_returns_the_job_it_created(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    first, new = store.create("a", {"fit_trials": 2}, idempotency_key="k1")
    second, again = store.create("b", {"fit_trials": 3}, idempotency_key="k1")
    assert new and not again and second.id == first.id == "a"
    assert store.get("b") is None


def test_pages_newest_first_and_filtered_by_state(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    for i in range(5):
        store.create(f"j{i}", {})
    store.update("j1", state=JobState.SUCCEEDED)
    page, total = store.page(limit=2, offset=1)
    assert total == 5 and [r.id for r in page] == ["j3", "j2"]
    done, total = store.page(JobState.SUCCEEDED)
    assert total == 1 and [r.id for r in done] == ["j1"]
    assert [r.id for r in store.in_state(JobState.QUEUED)] == ["j0", "j2", "j3", "j4"]


def test_only_known_columns_can_be_updated(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create("a", {})
    with pytest.raises(ValueError, match="options"):
        store.update("a", options="{}")


def test_concurrent_creations_with_one_key_make_one_job(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = JobStore(tmp_path / "jobs.sqlite")
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: store.create(f"j{i}", {}, idempotency_key="k"), range(16)))
    assert len({record.id for record, _ in made}) == 1
    assert sum(new for _, new in made) == 1
    assert store.page()[1] == 1


def test_a_file_from_before_training_runs_is_read_and_extended(tmp_path):
    import sqlite3

    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:  # the jobs table as it was before it had a kind
        db.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, options TEXT "
            "NOT NULL, submission_id TEXT, idempotency_key TEXT UNIQUE, created REAL NOT "
            "NULL, started REAL, finished REAL, error TEXT)"
        )
        db.execute(
            "INSERT INTO jobs (id, state, options, created) VALUES ('old', 'succeeded', '{}', 1.0)"
        )
    store = JobStore(path)
    old = store.get("old")
    assert old is not None and old.kind == "optimize" and old.state is JobState.SUCCEEDED
    store.create("new", {"profile": "p", "version": 1}, kind="train")
    assert JobStore(path).get("new").kind == "train"  # type: ignore[union-attr]
