"""Repositories: every query scoped by organization; they flush but never commit (the caller does)."""
