"""NUL characters in client text: refused on every backend.

SQLite stores `\\u0000` in text; PostgreSQL refuses it (text and JSON columns alike), and psycopg
fails the statement client-side. So a NUL that reached a statement would be stored on one backend and
a 500 on the other. Request bodies are checked by the schemas' `Input` base (api/schemas/common.py),
query strings and paths by `NulGuard` below, socket frames where their text reaches a statement.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import problem_response

NUL_MESSAGE = "text must not contain NUL (\\u0000) characters"


def contains_nul(value: Any) -> bool:
    """Whether a string, or any string (key or value) inside lists, tuples, sets and dicts, has a NUL."""
    kind = type(value)
    if kind is str:
        return "\x00" in value
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return any(contains_nul(item) for item in value)
    if kind is dict:
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    return isinstance(value, str) and "\x00" in value  # str subclasses (enums)


def storable(text: str) -> bool:
    """Text every backend can store: no NUL, and encodable as UTF-8 (json.loads lets lone surrogates
    such as "\\ud800" through; the drivers cannot encode them). The schemas refuse both already."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class NulGuard:
    """422 `validation_error` for a NUL in the path or the query string, before routing. A pure ASGI
    middleware: two substring tests per request (a NUL can only arrive percent-encoded in the query
    string, and uvicorn has decoded the path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            where = _where(scope)
            if where is not None:
                response = problem_response(
                    Request(scope),
                    422,
                    "validation_error",
                    f"{where}: {NUL_MESSAGE}",
                    errors=[{"location": where.split("."), "message": NUL_MESSAGE, "type": "nul_character"}],
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _where(scope: Scope) -> str | None:
    """`path`, `query.<name>` of the first parameter whose name or value has a NUL, or None."""
    if "\x00" in scope["path"]:
        return "path"
    query = scope["query_string"].decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
        if "\x00" in name or "\x00" in value:
            return f"query.{name.replace(chr(0), '')}"
    return None
