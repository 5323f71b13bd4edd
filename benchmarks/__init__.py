"""Benchmarks of kq-pipeline at fleet scale: `python -m benchmarks` (see benchmarks/README.md)."""
