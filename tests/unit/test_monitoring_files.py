"""Prometheus and Grafana provisioning: rules pass promtool, dashboards are well-formed and query
only Prometheus, and the metric names they use can be listed (checked against live processes in
tests/integration/ops/test_prometheus.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
_NAME = re.compile(r"\b((?:waybill|temporal|process|python)_[a-z0-9_]+)\b")


def expressions() -> list[str]:
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for path in DASHBOARDS:
        for p in json.loads(path.read_text())["panels"]:
            exprs += [t["expr"] for t in p["targets"]]
    return exprs


def metric_names() -> set[str]:
    """Every metric name the rules and dashboards query."""
    return {m for e in expressions() for m in _NAME.findall(e)}


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed"
)
def test_alert_rules_pass_promtool() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 11 rules found" in done.stdout


def test_every_alert_says_what_it_means_and_docs_explain_it() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert f"`{rule['alert']}`" in operations, (
                f"{rule['alert']} is not explained in docs/operations.md"
            )


def test_dashboards_are_provisioned_and_query_prometheus() -> None:
    assert {p.stem for p in DASHBOARDS} == {
        "waybill-fleet",
        "waybill-performance",
        "waybill-errors",
        "waybill-resources",
    }
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert panel["targets"], panel["title"]
    assert len(uids) == len(DASHBOARDS)
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["uid"] == "prometheus"
    assert len(metric_names()) > 20
