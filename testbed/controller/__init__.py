"""Compose a run from a spec: the run lifecycle, in-process and distributed runners, workers,
the emulated cluster around them, sweeps."""
