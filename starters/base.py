"""What every starter holds: the process's Temporal connection (connected on first use, again after a
failure) and the settings that name task queues and options."""

from __future__ import annotations

from temporalio.client import Client

from plumbing.settings import Settings
from plumbing.temporal import TemporalConnector


class Starter:
    def __init__(self, temporal: TemporalConnector, settings: Settings) -> None:
        self._temporal = temporal
        self._settings = settings

    async def _client(self) -> Client:
        return await self._temporal.get()
