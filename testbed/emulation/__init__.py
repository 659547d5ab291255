"""Device and link emulation: specs, profiles, and backends that realise a cluster.

Knows nothing of neural networks. Import the backend you need explicitly
(`testbed.emulation.local.LocalBackend`); this package exports only the spec
types and profile registry, which need neither root nor pyroute2.
"""

from .config import ClusterSpec, DeviceSpec, LinkSettings, LinkSpec, ScheduleEntry
from .profiles import ResolvedDevice, get_profile, register_profile, resolve
from .units import parse_memory, parse_percent, parse_rate, parse_time

__all__ = [
    "ClusterSpec", "DeviceSpec", "LinkSettings", "LinkSpec", "ResolvedDevice", "ScheduleEntry",
    "get_profile", "parse_memory", "parse_percent", "parse_rate", "parse_time",
    "register_profile", "resolve",
]  # fmt: skip
