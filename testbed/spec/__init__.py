"""Experiment specs: the typed, validated description of a run (YAML, scales, suites, sweeps, KT options)."""
