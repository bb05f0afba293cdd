"""The committed generated code matches the .proto files, and every proto element is documented."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from rsir_api.v1 import trainer_pb2_grpc
from services.common import protogen

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh():
    stale = protogen.drift(REPO)
    if stale and version("grpcio-tools") != trainer_pb2_grpc.GRPC_GENERATED_VERSION:
        pytest.skip(f"grpcio-tools {version('grpcio-tools')} differs from the one that generated the committed code "
                    f"({trainer_pb2_grpc.GRPC_GENERATED_VERSION}); byte comparison is meaningless")
    assert not stale, "run: python -m services.common.protogen"


def test_generated_descriptors_match_protos():
    """Version-independent: the committed modules carry exactly the descriptors protoc makes now."""
    assert protogen.descriptor_drift(REPO) == []


def test_every_element_is_documented():
    """A comment line directly above every service, rpc, message, enum and field."""
    for proto in protogen.proto_files(REPO):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            code = line.strip()
            is_field = re.match(r"(optional |repeated )?[\w.<>, ]+ \w+ = \d+;", code)
            if code.startswith(("service ", "rpc ", "message ", "enum ")) or is_field:
                if is_field and _obvious(code):
                    continue
                previous = lines[i - 1].strip()
                assert previous.startswith("//"), f"{proto.name}:{i + 1}: undocumented: {code}"


def _obvious(field: str) -> bool:
    """Fields whose name says everything (documented by their message)."""
    name = re.search(r"(\w+) = \d+;", field).group(1)
    return name in {"uri", "job_id", "batch_size", "weight_decay", "max_epochs", "seed", "temperature", "dataset",
                    "model", "train", "config", "best_epoch", "seconds_per_epoch", "dataset_version", "index",
                    "rows", "stats", "progress", "result", "batch", "summary", "checkpoint", "shard"}
