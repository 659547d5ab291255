"""Fixtures and launchers shared by tests and benchmarks (never imported by product code)."""
