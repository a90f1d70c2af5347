"""Version 1 of the REST API: one router per resource, each with its full path under PREFIX (the
app takes their routes as they are: see api/app.py)."""

PREFIX = "/api/v1"
