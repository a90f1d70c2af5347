"""`python -m waybill …`, the same as the `waybill` command (`waybill sockets --processes` starts its
replicas this way)."""

from waybill.cli import entry

entry()
