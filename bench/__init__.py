"""Benchmarks: `python -m bench.<name>`. Each starts what it needs, runs bounded, and stops by itself."""
