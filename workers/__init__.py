"""Temporal client connection and worker composition (which workflows/activities on which queue)."""
