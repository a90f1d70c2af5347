"""Whether a valid token's user may still act, one rule for the REST API (api/deps.py) and the socket
server: its user was not deactivated, moved to another organization or given another role, and did
not change their password after the token was issued. The user comes from the short user cache
(api/security/user_cache.py) unless `fresh`, else from the database."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.security.tokens import TokenClaims, TokenError
from api.security.user_cache import AuthUser, UserCache
from db.repositories.accounts import user_fields


async def load_user(
    users: UserCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
    *,
    fresh: bool = False,
) -> AuthUser | None:
    user = None if fresh else users.get(user_id)
    if user is None:
        async with sessionmaker() as session:
            row = await user_fields(session, user_id, AuthUser.__slots__)
        user = AuthUser(*row) if row is not None else None
        if user is not None:
            users.put(user)
    return user


def refusal(user: AuthUser | None, claims: TokenClaims) -> TokenError | None:
    """Why the token's user may no longer use it, or None."""
    if (
        user is None
        or not user.active
        or user.organization_id != claims.organization_id
        or user.role != claims.role.value
    ):
        return TokenError("invalid_token", "the token's user is no longer active")
    if user.password_changed_at and claims.issued_at < user.password_changed_at:
        return TokenError("token_revoked", "the password changed after this token was issued")
    return None
