"""The load generator's child process: jobs on stdin, answers on stdout."""

from __future__ import annotations

import asyncio
import json
import sys

from bench.common.children import emit
from bench.wsload.dispatcher import Dispatcher
from bench.wsload.drivers import LoadClient


async def client_role() -> None:
    """Child: jobs on stdin (one JSON object a line), answers on stdout; ends on EOF or `close`."""
    loader: LoadClient | None = None
    dispatcher: Dispatcher | None = None
    while line := await asyncio.to_thread(sys.stdin.readline):
        job = json.loads(line)
        op = job["op"]
        try:
            if op == "connect":
                loader = loader or LoadClient(job["epoch"])
                result = await loader.connect(job["host"], job["port"], job["tokens"], job["first_index"])
            elif op == "dispatcher":
                dispatcher = Dispatcher(job["epoch"])
                result = await dispatcher.connect(job["host"], job["port"], job["token"])
            elif op == "run":
                assert loader is not None
                result = await loader.run(job)
            elif op == "collect":
                assert dispatcher is not None
                result = await dispatcher.collect(job)
            elif op == "disconnect":
                if loader is not None:
                    await loader.close()
                    loader = None
                if dispatcher is not None and dispatcher.conn is not None:
                    await dispatcher.conn.close()
                    dispatcher = None
                result = {}
            else:
                raise ValueError(f"unknown job {op!r}")
        except Exception as exc:
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        emit("result", result)
