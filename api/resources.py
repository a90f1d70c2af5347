"""What the API and socket processes hold besides the stores: the Temporal connection, the token
service, the signed-out-session denylist and a short cache of authenticated users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.security.denylist import SessionDenylist
from api.security.tokens import TokenService
from api.security.user_cache import UserCache
from db.stores import Stores
from plumbing.settings import Settings
from plumbing.temporal import TemporalConnector


@dataclass
class Resources(Stores):
    temporal: TemporalConnector
    tokens: TokenService
    denylist: SessionDenylist  # signed-out sessions (API and sockets)
    users: UserCache = field(default_factory=UserCache)  # authenticated users, briefly (API)

    @classmethod
    async def open(cls, settings: Settings, temporal: TemporalConnector | None = None) -> Resources:
        stores: dict[str, Any] = Stores.open_fields(settings)
        return cls(
            **stores,
            temporal=temporal or TemporalConnector(settings),
            tokens=TokenService(settings),
            denylist=SessionDenylist(
                stores["cache_bus"], stores["cache_bus"], settings.access_token_ttl_seconds
            ),
        )
