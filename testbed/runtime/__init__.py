"""Runtime: moves tensors between model stages over gRPC (serde, services, supervision)."""
