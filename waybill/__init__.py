"""The composition root: the `waybill` CLI, the `waybill dev` supervisor and the wiring of stores to
the API, socket and worker processes. Nothing below imports it."""

from plumbing import __version__

__all__ = ["__version__"]
