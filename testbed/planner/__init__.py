"""Profiling, cost models and configuration choice over measured numbers."""
