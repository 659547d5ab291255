"""Metrics: run-directory records and optional time-series sinks (InfluxDB)."""
