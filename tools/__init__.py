"""Operator and developer tools behind `waybill` subcommands: simulate, seed, demo data, CSV import,
backup/restore, doctor. They use the system through its public entry points."""
