"""Compose a run from a spec: in-process training now, distributed workers and backends later."""
