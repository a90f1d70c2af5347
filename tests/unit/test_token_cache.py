"""Access tokens that passed verification are remembered by their text, never past their expiry."""

from __future__ import annotations

import time
import uuid

import pytest

from api.security import tokens as tokens_module
from api.security.tokens import LEEWAY_SECONDS, TokenError, TokenService, TokenType
from domain.roles import Role
from tests.support import test_settings

SECRET = "a-test-secret-that-is-long-enough-0123456789"
USER, ORG = uuid.uuid4(), uuid.uuid4()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **settings: object) -> TokenService:
    return TokenService(test_settings(jwt_keys={"k1": SECRET}, **settings), clock=clock)


def issue(service: TokenService, token_type: TokenType = TokenType.ACCESS) -> str:
    return service.issue(user_id=USER, organization_id=ORG, role=Role.DISPATCHER, token_type=token_type).token


def test_a_remembered_token_expires_like_a_checked_one() -> None:
    clock = Clock()
    service = make(clock, access_token_ttl_seconds=60)
    token = issue(service)
    first = service.verify(token, TokenType.ACCESS)
    assert service.verify(token, TokenType.ACCESS) is first  # remembered
    exp = first.expires_at.timestamp()
    clock.now = exp + LEEWAY_SECONDS - 0.5
    assert service.verify(token, TokenType.ACCESS) is first  # within the leeway, as PyJWT allows
    clock.now = exp + LEEWAY_SECONDS
    with pytest.raises(TokenError) as err:
        service.verify(token, TokenType.ACCESS)
    assert err.value.code == "token_expired"
    # Forgotten, so the full check decides from now on (PyJWT's own clock: not expired yet).
    assert token not in service._verified


def test_an_expired_token_is_refused_and_not_remembered() -> None:
    clock = Clock()
    service = make(clock)
    past = service.issue(
        user_id=USER,
        organization_id=ORG,
        role=Role.DISPATCHER,
        token_type=TokenType.ACCESS,
        now=tokens_module.datetime.now(tokens_module.UTC) - service.ttl(TokenType.ACCESS) * 2,
    ).token
    for _ in range(2):
        with pytest.raises(TokenError) as err:
            service.verify(past, TokenType.ACCESS)
        assert err.value.code == "token_expired"
    assert past not in service._verified


def test_the_type_is_still_checked_and_refresh_tokens_are_not_remembered() -> None:
    service = make(Clock())
    access, refresh = issue(service), issue(service, TokenType.REFRESH)
    service.verify(access, TokenType.ACCESS)
    with pytest.raises(TokenError) as err:
        service.verify(access, TokenType.REFRESH)
    assert err.value.code == "wrong_token_type"
    service.verify(refresh, TokenType.REFRESH)
    with pytest.raises(TokenError) as err:
        service.verify(refresh, TokenType.ACCESS)
    assert err.value.code == "wrong_token_type"
    assert refresh not in service._verified


def test_a_changed_token_is_checked_in_full() -> None:
    service = make(Clock())
    token = issue(service)
    service.verify(token, TokenType.ACCESS)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(TokenError):
        service.verify(tampered, TokenType.ACCESS)


def test_a_service_with_another_key_ring_does_not_share_what_it_remembers() -> None:
    clock = Clock()
    token = issue(make(clock))
    other = TokenService(test_settings(jwt_keys={"k2": SECRET + "x"}, jwt_active_kid="k2"), clock=clock)
    with pytest.raises(TokenError):
        other.verify(token, TokenType.ACCESS)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_CACHE_MAX", 5)
    clock = Clock()
    service = make(clock)
    issued = [issue(service) for _ in range(12)]
    for token in issued:
        service.verify(token, TokenType.ACCESS)
    assert len(service._verified) <= 5
    assert issued[-1] in service._verified
    # Every one of them still verifies (the forgotten ones in full).
    for token in issued:
        assert service.verify(token, TokenType.ACCESS).user_id == USER
