"""Benchmarks of the curvature hot path (issue 5). Run ``python -m benchmarks.run`` (``--quick`` for a smoke run)."""
