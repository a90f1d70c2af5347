"""Workflow definitions: deterministic code only (see DESIGN.md Conventions)."""
