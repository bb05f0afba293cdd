from rsir_api.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationSpec(_message.Message):
    __slots__ = ("tau", "p", "m", "top_k", "temperature", "prefix", "target", "min_len", "max_len", "dedup", "sources", "seed", "batch_rows")
    TAU_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MIN_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_LEN_FIELD_NUMBER: _ClassVar[int]
    DEDUP_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    tau: float
    p: float
    m: int
    top_k: int
    temperature: float
    prefix: str
    target: str
    min_len: int
    max_len: int
    dedup: bool
    sources: str
    seed: int
    batch_rows: int
    def __init__(self, tau: _Optional[float] = ..., p: _Optional[float] = ..., m: _Optional[int] = ..., top_k: _Optional[int] = ..., temperature: _Optional[float] = ..., prefix: _Optional[str] = ..., target: _Optional[str] = ..., min_len: _Optional[int] = ..., max_len: _Optional[int] = ..., dedup: _Optional[bool] = ..., sources: _Optional[str] = ..., seed: _Optional[int] = ..., batch_rows: _Optional[int] = ...) -> None: ...

class Shard(_message.Message):
    __slots__ = ("index", "count")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    index: int
    count: int
    def __init__(self, index: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("checkpoint", "dataset", "shard", "config", "output_key")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KEY_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _common_pb2.BlobRef
    dataset: _common_pb2.DatasetRef
    shard: Shard
    config: GenerationSpec
    output_key: str
    def __init__(self, checkpoint: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., shard: _Optional[_Union[Shard, _Mapping]] = ..., config: _Optional[_Union[GenerationSpec, _Mapping]] = ..., output_key: _Optional[str] = ...) -> None: ...

class GenerationStats(_message.Message):
    __slots__ = ("rows", "accepted_steps", "stopped_fidelity", "stopped_empty_pool", "stopped_length", "emitted", "too_short")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_STEPS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIDELITY_FIELD_NUMBER: _ClassVar[int]
    STOPPED_EMPTY_POOL_FIELD_NUMBER: _ClassVar[int]
    STOPPED_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EMITTED_FIELD_NUMBER: _ClassVar[int]
    TOO_SHORT_FIELD_NUMBER: _ClassVar[int]
    rows: int
    accepted_steps: int
    stopped_fidelity: int
    stopped_empty_pool: int
    stopped_length: int
    emitted: int
    too_short: int
    def __init__(self, rows: _Optional[int] = ..., accepted_steps: _Optional[int] = ..., stopped_fidelity: _Optional[int] = ..., stopped_empty_pool: _Optional[int] = ..., stopped_length: _Optional[int] = ..., emitted: _Optional[int] = ..., too_short: _Optional[int] = ...) -> None: ...

class GeneratedBatch(_message.Message):
    __slots__ = ("row_ids", "lengths", "items", "stats")
    ROW_IDS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    row_ids: _containers.RepeatedScalarFieldContainer[int]
    lengths: _containers.RepeatedScalarFieldContainer[int]
    items: _containers.RepeatedScalarFieldContainer[int]
    stats: GenerationStats
    def __init__(self, row_ids: _Optional[_Iterable[int]] = ..., lengths: _Optional[_Iterable[int]] = ..., items: _Optional[_Iterable[int]] = ..., stats: _Optional[_Union[GenerationStats, _Mapping]] = ...) -> None: ...

class GenerateSummary(_message.Message):
    __slots__ = ("stats", "result", "seconds", "device")
    STATS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    stats: GenerationStats
    result: _common_pb2.BlobRef
    seconds: float
    device: str
    def __init__(self, stats: _Optional[_Union[GenerationStats, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., seconds: _Optional[float] = ..., device: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("batch", "summary")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    batch: GeneratedBatch
    summary: GenerateSummary
    def __init__(self, batch: _Optional[_Union[GeneratedBatch, _Mapping]] = ..., summary: _Optional[_Union[GenerateSummary, _Mapping]] = ...) -> None: ...
