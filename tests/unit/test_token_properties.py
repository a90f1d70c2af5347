"""Token parsing under hostile input (RFC 8725): anything that is not exactly a token we issued,
for the purpose asked, is refused with a TokenError, never accepted and never another exception."""

from __future__ import annotations

import base64
import json
import uuid

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.security.tokens import TokenError, TokenService, TokenType
from domain.roles import Role
from tests.support import test_settings

SECRET = "a-test-secret-that-is-long-enough-0123456789"
service = TokenService(test_settings(jwt_keys={"k1": SECRET}))
USER, ORG = uuid.uuid4(), uuid.uuid4()


def issue(token_type: TokenType = TokenType.ACCESS) -> str:
    return service.issue(user_id=USER, organization_id=ORG, role=Role.DISPATCHER, token_type=token_type).token


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@given(st.text(max_size=400))
def test_arbitrary_strings_are_refused_with_token_error(raw: str) -> None:
    with pytest.raises(TokenError):
        service.verify(raw, TokenType.ACCESS)


@given(st.integers(min_value=0), st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_"))
def test_any_single_character_change_is_refused(position: int, replacement: str) -> None:
    token = issue()
    i = position % len(token)
    if token[i] == replacement or token[i] == ".":
        return
    tampered = token[:i] + replacement + token[i + 1 :]
    try:
        claims = service.verify(tampered, TokenType.ACCESS)
    except TokenError:
        return
    # base64url's last character can carry unused bits: the same bytes, so the same claims.
    assert claims.user_id == USER


def test_the_valid_token_passes_and_the_wrong_type_does_not() -> None:
    assert service.verify(issue(), TokenType.ACCESS).organization_id == ORG
    with pytest.raises(TokenError) as err:
        service.verify(issue(TokenType.REFRESH), TokenType.ACCESS)
    assert err.value.code == "wrong_token_type"


@pytest.mark.parametrize(
    "forge",
    [
        # alg=none with no signature
        lambda claims: f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(claims)}.",
        # another algorithm with the same secret
        lambda claims: jwt.encode(claims, SECRET, algorithm="HS512", headers={"kid": "k1"}),
        # a key id we do not have
        lambda claims: jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k2"}),
        # the right key, but audience or issuer of someone else
        lambda claims: jwt.encode(
            {**claims, "aud": "other"}, SECRET, algorithm="HS256", headers={"kid": "k1"}
        ),
        lambda claims: jwt.encode(
            {**claims, "iss": "other"}, SECRET, algorithm="HS256", headers={"kid": "k1"}
        ),
        # a required claim missing
        lambda claims: jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, SECRET, algorithm="HS256", headers={"kid": "k1"}
        ),
    ],
    ids=["alg-none", "other-alg", "unknown-kid", "other-aud", "other-iss", "no-exp"],
)
def test_forged_tokens_are_refused(forge: object) -> None:
    claims = jwt.decode(issue(), options={"verify_signature": False})
    with pytest.raises(TokenError):
        service.verify(forge(claims), TokenType.ACCESS)  # type: ignore[operator]
