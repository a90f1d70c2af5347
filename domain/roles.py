"""User roles and what each may do, in one place so that API and sockets agree."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    DISPATCHER = "dispatcher"
    DRIVER = "driver"
    VIEWER = "viewer"


ALL_ROLES: frozenset[Role] = frozenset(Role)
FLEET_WRITERS: frozenset[Role] = frozenset({Role.ADMIN, Role.DISPATCHER})
