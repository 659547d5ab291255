"""What crosses the network: gRPC stubs from .proto, the serde modules (never pickle), gRPC conventions."""
