"""Client-side calls into workflows: start, signal, update and update-with-start, each with its
workflow id and its id-reuse and conflict policies, written once. The API, the tools and the worker
call these; activities get them injected (activities/resources.py)."""
