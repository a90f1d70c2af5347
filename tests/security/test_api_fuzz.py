"""Schemathesis over the whole OpenAPI document, as an authenticated admin, against a real
`waybill dev` process (API, worker and bundled Temporal): no request a client can send may get a
5xx, and every documented response must match its schema."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.test_dev_command import STORE_VARS, WAYBILL
from tests.support import free_port

pytestmark = pytest.mark.fuzz
EXAMPLES = int(os.environ.get("WAYBILL_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    data.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")}
    env.update(
        {
            "WAYBILL_DATA_DIR": str(data),
            "WAYBILL_API_PORT": str(port),
            "WAYBILL_SOCKETS_PORT": str(free_port()),
            "WAYBILL_TEMPORAL_DEV_PORT": str(free_port()),
            "WAYBILL_TEMPORAL_UI_PORT": str(free_port()),
            "WAYBILL_WORKER_METRICS_PORT": "0",
            "WAYBILL_LOG_FORMAT": "json",
            "WAYBILL_LOG_LEVEL": "WARNING",
            # The fuzzer sends thousands of requests as one user from one address.
            "WAYBILL_RATE_LIMIT_IP": "0",
            "WAYBILL_RATE_LIMIT_USER": "0",
            "WAYBILL_RATE_LIMIT_LOGIN": "0",
            "WAYBILL_RATE_LIMIT_REFRESH": "0",
        }
    )
    log = (data.parent / "waybill.log").open("w")
    proc = subprocess.Popen(
        [WAYBILL, "dev"],
        env=env,
        cwd=data.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    else:
        proc.kill()
    try:
        assert proc.poll() is None, Path(log.name).read_text()[-4000:]
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        # An unhandled error is logged even when the fuzzer's check missed its response.
        errors = [line for line in Path(log.name).read_text().splitlines() if '"unhandled error"' in line]
        assert not errors, errors[:5]


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> schemathesis.BaseSchema:
    token = httpx.post(
        f"{api_url}/api/v1/auth/login", json={"email": "admin@demo.waybill.test", "password": "waybill-demo"}
    ).json()["access_token"]
    schema = schemathesis.openapi.from_url(f"{api_url}/api/openapi.json")
    schema.config.update(base_url=api_url, headers={"Authorization": f"Bearer {token}"})
    return schema


def test_no_server_errors_and_responses_match_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    failures: list[str] = []
    tried = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/auth/logout":
            continue  # would end the fuzzer's own session; covered by the auth tests

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        tried += 1
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every operation gets its turn; report all together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert tried > 40, f"only {tried} operations in the OpenAPI document"
    assert not failures, "\n\n".join(failures)
