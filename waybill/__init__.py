"""Waybill application shell: settings, logging, the `waybill` CLI and the dev supervisor."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("waybill")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
