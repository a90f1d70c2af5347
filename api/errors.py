"""One error type, rendered by one handler as RFC 9457 problem details with a machine `code`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import RPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ProblemError(Exception):
    """Raise anywhere in a request to answer with problem details."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers
        self.extra = extra


def not_found(kind: str, ident: object) -> ProblemError:
    # Same answer for "does not exist" and "belongs to another organization": no existence oracle.
    return ProblemError(404, f"{kind}_not_found", f"{kind.replace('_', ' ')} {ident} was not found")


def temporal_unavailable(**extra: Any) -> ProblemError:
    return ProblemError(
        503,
        "temporal_unavailable",
        "the workflow service is not reachable; retry shortly",
        headers={"Retry-After": "5"},
        **extra,
    )


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://waybill.dev/problems/{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"location": loc, "message": err.get("msg", ""), "type": err.get("type", "")})
    return out


_TEMPORAL_RETRYABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.CANCELLED,
    }
)


def _unparsable_json(exc: StarletteHTTPException) -> RequestValidationError | None:
    """A JSON body FastAPI could not parse for another reason than a syntax error (which it reports
    itself as a 422 `json_invalid`): an integer literal over Python's 4,300-digit limit or bytes that
    are not UTF-8 (ValueError), nesting too deep (RecursionError). FastAPI answers those 400 "There
    was an error parsing the body"; they get the same answer as any other malformed JSON."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
        return None
    error = {"type": "json_invalid", "loc": ("body",), "msg": f"JSON decode error: {cause}", "input": {}}
    return RequestValidationError([error])


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(request, exc.status, exc.code, exc.detail, exc.title, exc.headers, **exc.extra)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _validation_errors(exc)
    first = errors[0] if errors else {"location": [], "message": "invalid request"}
    where = ".".join(first["location"])
    detail = f"{where}: {first['message']}" if where else str(first["message"])
    return problem_response(request, 422, "validation_error", detail, errors=errors)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if (unparsable := _unparsable_json(exc)) is not None:
        return await _invalid(request, unparsable)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    return problem_response(request, exc.status_code, code, detail, headers=getattr(exc, "headers", None))


async def _temporal(request: Request, exc: RPCError) -> JSONResponse:
    # Temporal out of reach (or overloaded) anywhere in a request: retryable, never a 500.
    if exc.status not in _TEMPORAL_RETRYABLE:
        return await _unexpected(request, exc)
    log.warning("temporal unavailable", extra={"path": request.url.path, "status": exc.status.name})
    problem = temporal_unavailable()
    return problem_response(request, problem.status, problem.code, problem.detail, headers=problem.headers)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    # The database is down, restarting or its pool is exhausted: retryable, never a 500.
    log.warning("database unavailable", extra={"path": request.url.path, "error": type(exc).__name__})
    return problem_response(
        request,
        503,
        "database_unavailable",
        "the database is not reachable; retry shortly",
        headers={"Retry-After": "5"},
    )


async def _temporal_timeout(request: Request, exc: RPCTimeoutOrCancelledError) -> JSONResponse:  # noqa: ARG001
    return problem_response(
        request,
        504,
        "temporal_timeout",
        "the workflow service did not answer in time; the outcome is not known: "
        "read the resource before retrying",
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001
    log.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
    return problem_response(
        request, 500, "internal_error", "an unexpected error occurred; it has been logged"
    )


_HANDLERS: list[tuple[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]]] = [
    (ProblemError, _problem),
    (RequestValidationError, _invalid),
    (StarletteHTTPException, _http),
    (RPCError, _temporal),
    (OperationalError, _database),
    (InterfaceError, _database),
    (PoolTimeout, _database),
    (RPCTimeoutOrCancelledError, _temporal_timeout),
    (Exception, _unexpected),
]


def install_error_handlers(app: FastAPI) -> None:
    for exc_class, handler in _HANDLERS:
        app.add_exception_handler(exc_class, handler)
