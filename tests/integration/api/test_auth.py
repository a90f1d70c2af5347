from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.resources import Resources
from api.security.tokens import TokenService, TokenType
from api.security.user_cache import USER_CACHE_SECONDS
from db.models import User
from domain.roles import Role
from tests.integration.api.conftest import LoginFn
from tests.support import PASSWORD, Tenant

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, object] = r.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


async def test_login_then_me(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        "/api/v1/auth/login", json={"email": tenant.emails[Role.DISPATCHER], "password": PASSWORD}
    )
    assert r.status_code == 200
    pair = r.json()
    assert (pair["token_type"], pair["expires_in"]) == ("Bearer", 600)
    me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    body = me.json()
    assert body["email"] == tenant.emails[Role.DISPATCHER]
    assert body["role"] == "dispatcher"
    assert body["organization_id"] == str(tenant.organization_id)


async def test_login_email_is_case_insensitive(http: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await http.post(
        "/api/v1/auth/login", json={"email": tenant.emails[Role.ADMIN].upper(), "password": PASSWORD}
    )
    assert r.status_code == 200


async def test_bad_login_is_401_problem(http: httpx.AsyncClient, tenant: Tenant) -> None:
    wrong = await http.post(
        "/api/v1/auth/login", json={"email": tenant.emails[Role.ADMIN], "password": "nope-nope"}
    )
    unknown = await http.post(
        "/api/v1/auth/login", json={"email": "ghost@example.test", "password": "nope-nope"}
    )
    # Same answer whether the account exists or not: no user enumeration.
    assert (
        assert_problem(wrong, 401, "invalid_credentials")["detail"]
        == assert_problem(unknown, 401, "invalid_credentials")["detail"]
    )


async def test_expired_token_is_401(
    http: httpx.AsyncClient, tenant: Tenant, api_resources: Resources
) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    token = api_resources.tokens.issue(
        user_id=tenant.user_ids[Role.ADMIN],
        organization_id=tenant.organization_id,
        role=Role.ADMIN,
        token_type=TokenType.ACCESS,
        now=past,
    ).token
    r = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(r, 401, "token_expired")
    assert "Bearer" in r.headers["www-authenticate"]


async def test_missing_and_garbage_tokens(http: httpx.AsyncClient) -> None:
    assert_problem(await http.get("/api/v1/auth/me"), 401, "unauthenticated")
    assert_problem(
        await http.get("/api/v1/auth/me", headers={"Authorization": "Bearer abc.def"}), 401, "invalid_token"
    )


async def test_forged_and_none_alg_tokens_rejected(
    http: httpx.AsyncClient, tenant: Tenant, api_resources: Resources
) -> None:
    s = api_resources.settings
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "sub": str(tenant.user_ids[Role.ADMIN]),
        "org": str(tenant.organization_id),
        "role": "admin",
        "typ": "access",
        "jti": "x",
        "iat": now,
        "exp": now + 60,
    }
    forged = jwt.encode(
        claims,
        "some-other-secret-of-sufficient-length!!",
        algorithm="HS256",
        headers={"kid": s.active_kid},
    )
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": s.active_kid})
    for token in (forged, unsigned):
        assert_problem(
            await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}),
            401,
            "invalid_token",
        )


async def test_refresh_token_cannot_be_used_as_access(http: httpx.AsyncClient, tenant: Tenant) -> None:
    pair = (
        await http.post("/api/v1/auth/login", json={"email": tenant.emails[Role.ADMIN], "password": PASSWORD})
    ).json()
    r = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert_problem(r, 401, "wrong_token_type")
    r = await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["access_token"]})
    assert_problem(r, 401, "wrong_token_type")


async def test_refresh_rotates_and_reuse_revokes_family(http: httpx.AsyncClient, tenant: Tenant) -> None:
    first = (
        await http.post(
            "/api/v1/auth/login", json={"email": tenant.emails[Role.DRIVER], "password": PASSWORD}
        )
    ).json()
    r = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # The old token comes back: reuse is detected and the newest token dies with it.
    assert_problem(
        await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        401,
        "refresh_token_reused",
    )
    assert_problem(
        await http.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}),
        401,
        "token_revoked",
    )


async def test_logout_revokes_refresh(http: httpx.AsyncClient, tenant: Tenant) -> None:
    pair = (
        await http.post(
            "/api/v1/auth/login", json={"email": tenant.emails[Role.VIEWER], "password": PASSWORD}
        )
    ).json()
    assert (
        await http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 204
    assert_problem(
        await http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
        "token_revoked",
    )


async def test_unknown_kid_rejected(
    http: httpx.AsyncClient, tenant: Tenant, api_resources: Resources
) -> None:
    other = TokenService(
        api_resources.settings.model_copy(update={"jwt_keys": {"old": "x" * 40}, "jwt_active_kid": "old"})
    )
    token = other.issue(
        user_id=tenant.user_ids[Role.ADMIN],
        organization_id=tenant.organization_id,
        role=Role.ADMIN,
        token_type=TokenType.ACCESS,
    ).token
    body = assert_problem(
        await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_token"
    )
    assert "unknown or retired key" in str(body["detail"])


async def test_me_for_driver_shows_no_driver_link_until_created(
    http: httpx.AsyncClient, tenant: Tenant, login: LoginFn
) -> None:
    me = await http.get("/api/v1/auth/me", headers=await login(tenant, Role.DRIVER))
    assert me.json()["driver_id"] is None


async def test_deactivated_user_loses_access_once_the_cache_entry_expires(
    http: httpx.AsyncClient,
    tenant: Tenant,
    login: LoginFn,
    api_resources: Resources,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = await login(tenant, Role.VIEWER)
    assert (await http.get("/api/v1/auth/me", headers=headers)).status_code == 200
    async with sessionmaker() as session:
        user_id = tenant.user_ids[Role.VIEWER]
        await session.execute(update(User).where(User.id == user_id).values(active=False))
        await session.commit()
    # Within USER_CACHE_SECONDS the cached user may still answer (the documented bound) ...
    assert (await http.get("/api/v1/auth/me", headers=headers)).status_code == 200
    # ... and once the entry has expired the database is asked again and says no.
    later = time.monotonic() + USER_CACHE_SECONDS + 0.1
    monkeypatch.setattr(api_resources.users, "_clock", lambda: later)
    assert_problem(await http.get("/api/v1/auth/me", headers=headers), 401, "invalid_token")


async def _login_pair(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    pair: dict[str, str] = r.json()
    return pair


def _bearer(pair: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_logout_ends_the_sessions_access_token(http: httpx.AsyncClient, tenant: Tenant) -> None:
    email = tenant.emails[Role.DISPATCHER]
    pair, other = await _login_pair(http, email), await _login_pair(http, email)  # two devices
    assert (await http.get("/api/v1/auth/me", headers=_bearer(pair))).status_code == 200
    r = await http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 204
    assert_problem(await http.get("/api/v1/auth/me", headers=_bearer(pair)), 401, "token_revoked")
    assert_problem(await http.get("/api/v1/depots", headers=_bearer(pair)), 401, "token_revoked")
    # The other device's session is not this one: it keeps working.
    assert (await http.get("/api/v1/auth/me", headers=_bearer(other))).status_code == 200


async def test_reuse_detection_denies_the_familys_access_tokens(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    first = await _login_pair(http, tenant.emails[Role.DRIVER])
    r = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()  # e.g. the thief's, after refreshing with a stolen token
    for pair in (first, second):
        assert (await http.get("/api/v1/auth/me", headers=_bearer(pair))).status_code == 200
    assert_problem(
        await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        401,
        "refresh_token_reused",
    )
    for pair in (first, second):
        assert_problem(await http.get("/api/v1/auth/me", headers=_bearer(pair)), 401, "token_revoked")
