from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetRef(_message.Message):
    __slots__ = ("uri", "version")
    URI_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    uri: str
    version: str
    def __init__(self, uri: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class BlobRef(_message.Message):
    __slots__ = ("uri", "sha256")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("name", "dim", "layers", "heads", "dropout", "max_len", "cl_weight", "cl_temperature", "crop_ratio", "mask_ratio", "reorder_ratio", "bsarec_alpha", "bsarec_c")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_LEN_FIELD_NUMBER: _ClassVar[int]
    CL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CL_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    CROP_RATIO_FIELD_NUMBER: _ClassVar[int]
    MASK_RATIO_FIELD_NUMBER: _ClassVar[int]
    REORDER_RATIO_FIELD_NUMBER: _ClassVar[int]
    BSAREC_ALPHA_FIELD_NUMBER: _ClassVar[int]
    BSAREC_C_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    layers: int
    heads: int
    dropout: float
    max_len: int
    cl_weight: float
    cl_temperature: float
    crop_ratio: float
    mask_ratio: float
    reorder_ratio: float
    bsarec_alpha: float
    bsarec_c: int
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., layers: _Optional[int] = ..., heads: _Optional[int] = ..., dropout: _Optional[float] = ..., max_len: _Optional[int] = ..., cl_weight: _Optional[float] = ..., cl_temperature: _Optional[float] = ..., crop_ratio: _Optional[float] = ..., mask_ratio: _Optional[float] = ..., reorder_ratio: _Optional[float] = ..., bsarec_alpha: _Optional[float] = ..., bsarec_c: _Optional[int] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceInfo(_message.Message):
    __slots__ = ("devices", "default_device", "memory_budget_bytes")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_DEVICE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    default_device: str
    memory_budget_bytes: int
    def __init__(self, devices: _Optional[_Iterable[str]] = ..., default_device: _Optional[str] = ..., memory_budget_bytes: _Optional[int] = ...) -> None: ...
