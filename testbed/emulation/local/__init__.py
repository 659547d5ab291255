"""The local backend: network namespaces, cgroups and tc on this host (and its no-root fallback)."""
