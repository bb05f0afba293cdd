"""What every RSIR gRPC service shares: the server bootstrap, error mapping, object storage,
artifact helpers, settings, logging and the client plumbing."""
