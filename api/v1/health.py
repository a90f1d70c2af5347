"""Liveness and readiness. Readiness names each failing part so an operator knows where to look."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.errors import problem_response
from api.http.readiness import readiness
from api.resources import Resources
from plumbing import __version__

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/ready", summary="Readiness: database, cache (if configured) and Temporal answer")
async def ready(request: Request) -> JSONResponse:
    resources: Resources = request.app.state.resources
    results = await readiness(resources)
    checks = {name: "ok" if ok else "failing" for name, ok in results.items()}
    failing = [name for name, ok in results.items() if not ok]
    if failing:
        return problem_response(
            request,
            503,
            "not_ready",
            f"not ready: {', '.join(failing)} failing",
            checks=checks,
            failing=failing,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "checks": checks})
