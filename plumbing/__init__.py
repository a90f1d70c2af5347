"""Process plumbing every Waybill process may import: settings, logging, log context, tracing, the event
loop, port checks, the Temporal connection, its data converter and the JSON codec of domain dataclasses
built on it. Imports nothing of the project but `domain/`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("waybill")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
