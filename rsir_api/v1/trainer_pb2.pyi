from rsir_api.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainSpec(_message.Message):
    __slots__ = ("loss", "negatives", "batch_size", "lr", "weight_decay", "max_epochs", "patience", "time_budget", "seed", "device", "synthetic_weight", "eval_batch_size", "finetune_real", "insertion_ratio", "finetune_lr_scale", "precision", "min_delta", "item_updates", "valid_users")
    LOSS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MAX_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_BUDGET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    EVAL_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    FINETUNE_REAL_FIELD_NUMBER: _ClassVar[int]
    INSERTION_RATIO_FIELD_NUMBER: _ClassVar[int]
    FINETUNE_LR_SCALE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    MIN_DELTA_FIELD_NUMBER: _ClassVar[int]
    ITEM_UPDATES_FIELD_NUMBER: _ClassVar[int]
    VALID_USERS_FIELD_NUMBER: _ClassVar[int]
    loss: str
    negatives: int
    batch_size: int
    lr: float
    weight_decay: float
    max_epochs: int
    patience: int
    time_budget: float
    seed: int
    device: str
    synthetic_weight: float
    eval_batch_size: int
    finetune_real: bool
    insertion_ratio: float
    finetune_lr_scale: float
    precision: str
    min_delta: float
    item_updates: str
    valid_users: int
    def __init__(self, loss: _Optional[str] = ..., negatives: _Optional[int] = ..., batch_size: _Optional[int] = ..., lr: _Optional[float] = ..., weight_decay: _Optional[float] = ..., max_epochs: _Optional[int] = ..., patience: _Optional[int] = ..., time_budget: _Optional[float] = ..., seed: _Optional[int] = ..., device: _Optional[str] = ..., synthetic_weight: _Optional[float] = ..., eval_batch_size: _Optional[int] = ..., finetune_real: _Optional[bool] = ..., insertion_ratio: _Optional[float] = ..., finetune_lr_scale: _Optional[float] = ..., precision: _Optional[str] = ..., min_delta: _Optional[float] = ..., item_updates: _Optional[str] = ..., valid_users: _Optional[int] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("job_id", "dataset", "model", "train", "init_checkpoint", "warm_start")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    INIT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    WARM_START_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dataset: _common_pb2.DatasetRef
    model: _common_pb2.ModelSpec
    train: TrainSpec
    init_checkpoint: _common_pb2.BlobRef
    warm_start: bool
    def __init__(self, job_id: _Optional[str] = ..., dataset: _Optional[_Union[_common_pb2.DatasetRef, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelSpec, _Mapping]] = ..., train: _Optional[_Union[TrainSpec, _Mapping]] = ..., init_checkpoint: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., warm_start: _Optional[bool] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("epoch", "loss", "valid", "seconds", "best_epoch", "improved")
    class ValidEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    IMPROVED_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    loss: float
    valid: _containers.ScalarMap[str, float]
    seconds: float
    best_epoch: int
    improved: bool
    def __init__(self, epoch: _Optional[int] = ..., loss: _Optional[float] = ..., valid: _Optional[_Mapping[str, float]] = ..., seconds: _Optional[float] = ..., best_epoch: _Optional[int] = ..., improved: _Optional[bool] = ...) -> None: ...

class TrainResult(_message.Message):
    __slots__ = ("job_id", "checkpoint", "test", "valid", "best_epoch", "epochs", "stopped_by", "seconds", "seconds_per_epoch", "peak_memory_mb", "dataset_version", "reused", "finetune_kept", "insertion_sequences", "ranks")
    class TestEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ValidEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    BEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_BY_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_PER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    FINETUNE_KEPT_FIELD_NUMBER: _ClassVar[int]
    INSERTION_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    checkpoint: _common_pb2.BlobRef
    test: _containers.ScalarMap[str, float]
    valid: _containers.ScalarMap[str, float]
    best_epoch: int
    epochs: int
    stopped_by: str
    seconds: float
    seconds_per_epoch: float
    peak_memory_mb: float
    dataset_version: str
    reused: bool
    finetune_kept: bool
    insertion_sequences: int
    ranks: _common_pb2.BlobRef
    def __init__(self, job_id: _Optional[str] = ..., checkpoint: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ..., test: _Optional[_Mapping[str, float]] = ..., valid: _Optional[_Mapping[str, float]] = ..., best_epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., stopped_by: _Optional[str] = ..., seconds: _Optional[float] = ..., seconds_per_epoch: _Optional[float] = ..., peak_memory_mb: _Optional[float] = ..., dataset_version: _Optional[str] = ..., reused: _Optional[bool] = ..., finetune_kept: _Optional[bool] = ..., insertion_sequences: _Optional[int] = ..., ranks: _Optional[_Union[_common_pb2.BlobRef, _Mapping]] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: TrainProgress
    result: TrainResult
    def __init__(self, progress: _Optional[_Union[TrainProgress, _Mapping]] = ..., result: _Optional[_Union[TrainResult, _Mapping]] = ...) -> None: ...
