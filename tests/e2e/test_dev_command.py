"""`waybill dev` as a user runs it: a real process, real ports, Ctrl-C, restart with the data kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

WAYBILL = str(Path(sys.executable).parent / "waybill")
STORE_VARS = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "TEMPORAL_ADDRESS", "TEST_DATABASE_URL")


class DevProcess:
    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        self.data_dir = data_dir
        self.ports = ports
        self.env = {
            k: v for k, v in os.environ.items() if k not in STORE_VARS and not k.startswith("WAYBILL_")
        }
        self.env.update(
            {
                "WAYBILL_DATA_DIR": str(data_dir),
                "WAYBILL_API_PORT": str(ports["api"]),
                "WAYBILL_SOCKETS_PORT": str(ports["sockets"]),
                "WAYBILL_TEMPORAL_DEV_PORT": str(ports["temporal"]),
                "WAYBILL_TEMPORAL_UI_PORT": str(ports["ui"]),
                "WAYBILL_LOG_FORMAT": "text",
            }
        )
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 120) -> None:
        self.proc = subprocess.Popen(
            [WAYBILL, "dev"],
            env=self.env,
            cwd=self.data_dir.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.output.append(line)
            if "Press Ctrl-C to stop" in line:
                return
            if time.monotonic() > deadline:
                break
        raise AssertionError("waybill dev did not come up:\n" + "".join(self.output[-40:]))

    def ctrl_c(self, timeout: float = 60) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        out, _ = self.proc.communicate(timeout=timeout)
        self.output.append(out)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    ports = {name: free_port() for name in ("api", "sockets", "temporal", "ui")}
    process = DevProcess(tmp_path / "data", ports)
    yield process
    process.kill()


def login_dispatcher(api: str) -> dict[str, str]:
    r = httpx.post(
        f"{api}/api/v1/auth/login", json={"email": "dispatcher@demo.waybill.test", "password": "waybill-demo"}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_dev_up_ctrl_c_and_restart_keeps_data(dev: DevProcess) -> None:
    api = f"http://127.0.0.1:{dev.ports['api']}"
    dev.start()
    banner = "".join(dev.output)
    assert "dispatcher@demo.waybill.test" in banner
    assert f"localhost:{dev.ports['ui']}" in banner

    assert httpx.get(f"{api}/health").status_code == 200
    ready = httpx.get(f"{api}/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    ui = httpx.get(f"http://127.0.0.1:{dev.ports['ui']}/", follow_redirects=True, timeout=10)
    assert ui.status_code == 200
    assert "<html" in ui.text.lower()
    headers = login_dispatcher(api)
    me = httpx.get(f"{api}/api/v1/auth/me", headers=headers).json()
    assert (me["email"], me["role"]) == ("dispatcher@demo.waybill.test", "dispatcher")
    depot = httpx.post(
        f"{api}/api/v1/depots", headers=headers, json={"name": "Kept", "location": {"lat": 1, "lon": 2}}
    )
    assert depot.status_code == 201, depot.text
    check = subprocess.run(
        [WAYBILL, "check"],
        env={**dev.env, "TEMPORAL_ADDRESS": f"127.0.0.1:{dev.ports['temporal']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert '"name": "database"' in check.stdout

    assert dev.ctrl_c() == 0, "".join(dev.output[-30:])
    assert processes_mentioning(str(dev.data_dir)) == []
    assert not any(port_open(p) for p in dev.ports.values())

    dev.start()
    headers = login_dispatcher(api)
    names = [d["name"] for d in httpx.get(f"{api}/api/v1/depots", headers=headers).json()["items"]]
    assert "Kept" in names
    assert "Berlin Mitte" in names
    assert "Already seeded" in "".join(dev.output)
    assert dev.ctrl_c() == 0
    assert processes_mentioning(str(dev.data_dir)) == []


def test_busy_port_is_one_clear_line(dev: DevProcess) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", dev.ports["api"]))
        holder.listen()
        result = subprocess.run([WAYBILL, "dev"], env=dev.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"waybill: port {dev.ports['api']} (API) is already in use: stop the process holding it "
        f"(e.g. `lsof -i :{dev.ports['api']}`) or set WAYBILL_API_PORT to another port"
    ]


def test_separate_process_without_redis_is_refused(dev: DevProcess) -> None:
    result = subprocess.run([WAYBILL, "api"], env=dev.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "needs REDIS_URL" in result.stderr
