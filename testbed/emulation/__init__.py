"""Device and link emulation: device profiles, links, and backends that realise a cluster.

Knows nothing of neural networks. Import what you need from its module
(`testbed.emulation.config.ClusterSpec`, `testbed.emulation.local.backend.LocalBackend`);
this package imports nothing, so the agents under `agents/` start fast.
"""
