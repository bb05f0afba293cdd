"""``python -m services.common.healthcheck HOST:PORT [--service NAME]``: exit 0 iff SERVING.

A probe for compose healthchecks (Kubernetes uses its native ``grpc:`` probe instead).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def health_status(address: str, service: str = "", timeout: float = 3.0) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...) or "UNREACHABLE"/"UNKNOWN_SERVICE"."""
    with grpc.insecure_channel(address) as channel:
        try:
            # types-grpcio-health-checking declares HealthStub without the Check it sets in __init__
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return "UNKNOWN_SERVICE" if exc.code() == grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health probe")
    parser.add_argument("address", help="host:port")
    parser.add_argument("--service", default="", help="full service name; default: the whole server")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    status = health_status(args.address, args.service, args.timeout)
    sys.stderr.write(f"{args.address} {args.service or '(server)'}: {status}\n")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
