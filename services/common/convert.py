"""Conversions every service shares between proto messages and core/domain types.

Config messages mirror the core's frozen dataclasses field for field, with every field
``optional``: a field the client did not set takes the core default, and the dataclass validates
the result (a bad value raises ``ConfigError`` naming ``<request field>.<config field>``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from google.protobuf.message import Message

from rsir.config import from_dict, to_dict
from rsir.errors import ConfigError
from rsir_api.v1 import common_pb2
from services.common.artifacts import BlobRef, DatasetRef

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def config_from_message(cls: type[T], message: Message, field: str) -> T:
    """Build config dataclass ``cls`` from the fields set in ``message``."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {name: getattr(message, name) for name in names if message.HasField(name)}
    try:
        return from_dict(cls, values)
    except ConfigError as exc:
        raise ConfigError(f"{field}.{exc}") from None


def config_to_message(config: Any, message_cls: type[M]) -> M:
    """The message of a config dataclass, every field set (None stays unset)."""
    return message_cls(**{k: v for k, v in to_dict(config).items() if v is not None})


def dataset_ref_from_message(message: common_pb2.DatasetRef, field: str = "dataset") -> DatasetRef:
    return DatasetRef(message.uri, message.version).validate(field)


def dataset_ref_to_message(ref: DatasetRef) -> common_pb2.DatasetRef:
    return common_pb2.DatasetRef(uri=ref.uri, version=ref.version)


def blob_ref_from_message(message: common_pb2.BlobRef, field: str) -> BlobRef:
    return BlobRef(message.uri, message.sha256).validate(field)


def blob_ref_to_message(ref: BlobRef) -> common_pb2.BlobRef:
    return common_pb2.BlobRef(uri=ref.uri, sha256=ref.sha256)
