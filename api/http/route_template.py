"""The route template a request matched ("/api/v1/deliveries/{delivery_id}"), for metric labels
and span names: never the raw path, whose ids would explode the number of series."""

from __future__ import annotations

from starlette.types import Scope


def route_template(scope: Scope) -> str:
    # Every route sits in the app's own router with its full path (api/app.py), so its template
    # is the whole of it.
    template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) else "unmatched"
