"""Generated protobuf and gRPC stubs; regenerate with `python -m testbed.runtime.wire.protogen`."""
