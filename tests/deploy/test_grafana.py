"""The Grafana dashboard and the Prometheus set-up of deploy/grafana: the dashboard shows every
metric stagetune exports and no other (a renamed metric would leave a panel empty), and
Prometheus reads the file Ray writes its nodes' metrics addresses to."""

from __future__ import annotations

import json
import re

import yaml
from ray._private import ray_constants

from tests.conftest import REPO
from tuner._metrics import METRICS, SEARCH_TAGS

GRAFANA = REPO / "deploy" / "grafana"


def queries() -> list[str]:
    dashboard = json.loads((GRAFANA / "stagetune.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_dashboard_shows_every_metric_stagetune_exports_and_no_other():
    named = {m for q in queries() for m in re.findall(r"\bray_stagetune_\w+", q)}
    assert named == {f"ray_{name}" for name, _, _ in METRICS.values()}


def test_every_panel_selects_the_jobs_chosen_and_groups_by_tags_the_metrics_carry():
    tags = {tag for _, _, keys in METRICS.values() for tag in keys}
    for query in queries():
        assert 'job_id=~"$job_id"' in query, query
        for group in re.findall(r"by \(([^)]*)\)", query):
            assert {g.strip() for g in group.split(",")} <= tags, query
    assert set(SEARCH_TAGS) <= tags


def test_prometheus_reads_the_service_discovery_file_ray_writes():
    config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [files] = job["file_sd_configs"]
    assert files["files"] == [f"/tmp/ray/{ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE}"]
