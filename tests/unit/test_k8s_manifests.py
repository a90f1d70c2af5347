"""The Kubernetes manifests render with kustomize and agree with the code: settings names, CLI
commands, probes, resources, graceful termination."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_files import ROOT, SETTINGS_VARS
from waybill.cli import _parser

K8S = ROOT / "deploy" / "k8s"
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / "overlays" / "production"
    shutil.copy(overlay / "secrets.env.example", overlay / "secrets.env")
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for d in docs:
        if d["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        spec = d["spec"]["jobTemplate"]["spec"] if d["kind"] == "CronJob" else d["spec"]
        found[d["metadata"]["name"]] = spec["template"]["spec"]
    return found


def test_everything_lands_in_the_namespace_with_the_pinned_image(rendered: list[dict[str, Any]]) -> None:
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {"waybill"}
    for name, spec in pods(rendered).items():
        for c in spec["containers"]:
            assert c["image"] == "ghcr.io/example/waybill:0.1.0", name


def test_config_and_secret_keys_are_settings_waybill_reads(rendered: list[dict[str, Any]]) -> None:
    for d in rendered:
        if d["kind"] in ("ConfigMap", "Secret"):
            keys = set(d.get("data", {}))
            assert keys, d["metadata"]["name"]
            assert keys <= set(SETTINGS_VARS), keys - set(SETTINGS_VARS)


def test_containers_run_real_commands_with_limits_and_no_root(rendered: list[dict[str, Any]]) -> None:
    parser = _parser()
    for name, spec in pods(rendered).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for c in spec["containers"]:
            parser.parse_args(c["args"])  # exits on an unknown command or flag
            assert {"requests", "limits"} <= set(c["resources"]), name
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            refs = {next(iter(e.values()))["name"].split("-")[1] for e in c["envFrom"]}
            assert refs == {"config", "secrets"}, name


def test_api_and_sockets_are_probed_and_workers_get_time_to_drain(rendered: list[dict[str, Any]]) -> None:
    specs = pods(rendered)
    for name in ("waybill-api", "waybill-sockets"):
        c = specs[name]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/health", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready", name
    # Worker.graceful_shutdown_timeout is 10 s (workers/compose.py), plus closing connections.
    assert specs["waybill-worker"]["terminationGracePeriodSeconds"] >= 30
    assert specs["waybill-worker-routing"]["containers"][0]["args"] == ["worker", "--queue", "routing"]
    assert specs["waybill-worker-analytics"]["containers"][0]["args"] == ["worker", "--queue", "analytics"]
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in rendered if d["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == {"waybill-api", "waybill-sockets", "waybill-worker", "waybill-worker-routing"}
