"""The route template a request matched ("/api/v1/deliveries/{delivery_id}"), for metric labels
and span names: never the raw path, whose ids would explode the number of series."""

from __future__ import annotations

from starlette.types import Scope


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return "unmatched"
    # A route of an included router knows only its own part ("/deliveries/{id}"): the segments of
    # the request path before it are the prefixes it was mounted under ("/api/v1").
    path_segments = str(scope.get("path", "")).split("/")
    own = template.count("/")
    prefix = "/".join(path_segments[: max(1, len(path_segments) - own)])
    return (prefix + template) if prefix and not template.startswith(prefix + "/") else template
