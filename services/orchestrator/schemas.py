"""Request and response models of the run API, validated at the edge.

The config spec models (``ModelSpec``, ``TrainSpec``, ``GenerationSpec``) are derived from the
``rsir.config`` dataclasses by ``spec_model``, so their ranges are the core's: a bad value gets a 422
whose ``loc`` names the field (``generation.tau``). Every field is optional: unset takes the core
library's default. Each model also builds its core config (``.config``), which re-checks the
cross-field rules (``heads`` must divide ``dim``); a failure is a 422 naming the field too.
τ = ∞ reads from ``"inf"`` or a JSON number and is written as ``"inf"`` (``rsir.jsonio``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from rsir import jsonio
from rsir.config import GenerationConfig, ModelConfig, Setting, TrainConfig, from_dict, schema
from rsir.errors import ConfigError
from rsir.models import MODELS
from rsir.recipes import RunConfig, TeacherConfig, resolve
from rsir.sources import BENCHMARKS, SYNTHETIC

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RUN_ID = r"^r[0-9a-f]{12}$"

# A float as JSON has it (rsir.jsonio): a number or "inf" (any case, also "Infinity") in, "inf" out.
_JSON_FLOAT = float | Literal["inf", "-inf"]
JsonFloat = Annotated[float, BeforeValidator(jsonio.number, json_schema_input_type=_JSON_FLOAT),
                      PlainSerializer(jsonio.jsonable, return_type=_JSON_FLOAT, when_used="json")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ConfigSpec(_Spec):
    """Base of the models ``spec_model`` derives: the fields set here over the core defaults."""

    core: ClassVar[type]  # the config dataclass built by ``config``
    excluded: ClassVar[tuple[str, ...]]  # its fields the caller supplies to ``config`` (the run's seed)

    def values(self) -> dict[str, Any]:
        """The fields that are set (nested models as dicts)."""
        return self.model_dump(exclude_none=True)

    def config(self, *fixed: Any) -> Any:
        """The core config: the fields set here, then ``fixed`` for the excluded fields in their order.
        Raises ``ConfigError`` naming the field when a cross-field rule fails."""
        if len(fixed) != len(self.excluded):
            raise TypeError(f"{type(self).__name__}.config takes {', '.join(self.excluded) or 'no values'}")
        return from_dict(self.core, {**self.values(), **dict(zip(self.excluded, fixed, strict=True))})

    @model_validator(mode="after")
    def _consistent(self) -> ConfigSpec:
        defaults = {s.name: s.default for s in schema(self.core)}
        try:
            self.config(*(defaults[name] for name in self.excluded))
        except ConfigError as exc:
            raise located(exc, self) from None
        return self


def located(exc: ConfigError, model: BaseModel) -> ValidationError:
    """``exc``, raised while checking ``model``, as a validation error whose ``loc`` is the field its
    message names ("student.heads: ..." → ``("student", "heads")``), so the 422 points at the field.
    Raise it from a model validator; pydantic prefixes the model's own place in the request."""
    text = str(exc)
    loc = tuple(text.split(": ", 1)[0].split("."))
    if loc[0] not in type(model).model_fields:
        loc = ()
    value: Any = model.model_dump(exclude_none=True)
    for part in loc:
        value = value.get(part) if isinstance(value, dict) else None
    error = PydanticCustomError("config", "{message}", {"message": text})
    return ValidationError.from_exception_data(type(model).__name__, [InitErrorDetails(type=error, loc=loc,
                                                                                       input=value)])


def spec_model(cls: type, *, name: str, exclude: tuple[str, ...] = ("seed",),
               choices: Mapping[str, tuple[str, ...]] | None = None,
               nested: Mapping[type, type[ConfigSpec]] | None = None) -> type[ConfigSpec]:
    """The request model of config dataclass ``cls``: one optional field per dataclass field but
    ``exclude`` (None: the core default), with the constraints, choices and help of its setting.
    Excluded fields are passed to ``.config`` in the order given; names ``cls`` lacks are ignored.

    ``choices`` narrows string fields to values only the edge knows (the registered backbones).
    A field that is itself a config dataclass (``X`` or ``X | None``) takes the model ``nested``
    gives for ``X``, else one derived from ``X`` (default ``exclude``, the same ``nested``).
    """
    choices, nested = dict(choices or {}), dict(nested or {})
    exclude = tuple(name for name in exclude if name in {s.name for s in schema(cls)})
    fields: dict[str, Any] = {
        s.name: (_annotation(s, choices.get(s.name) or s.choices, nested) | None,
                 Field(None, description=s.help or None, **_constraints(s, narrowed=s.name in choices)))
        for s in schema(cls) if s.name not in exclude}
    model = create_model(name, __base__=ConfigSpec, __doc__=cls.__doc__, __module__=__name__, **fields)
    model.core, model.excluded = cls, exclude
    return model


def _annotation(s: Setting, choices: tuple[str, ...] | None, nested: Mapping[type, type[ConfigSpec]]) -> Any:
    if dataclasses.is_dataclass(s.kind):
        kind: type = s.kind
        return nested.get(kind) or spec_model(kind, name=kind.__name__.removesuffix("Config") + "Spec", nested=nested)
    if choices:
        return Literal[choices]
    return JsonFloat if s.kind is float else s.kind


def _constraints(s: Setting, *, narrowed: bool) -> dict[str, Any]:
    """``Field`` keywords: the bounds, and the pattern anchored (the core matches it whole) unless the
    edge narrowed the field to fixed choices."""
    return {**s.bounds(), **({"pattern": f"^(?:{s.pattern})$"} if s.pattern and not narrowed else {})}


if TYPE_CHECKING:  # the derived models, as the type checker sees them
    ModelSpec: TypeAlias = ConfigSpec
    TrainSpec: TypeAlias = ConfigSpec
    GenerationSpec: TypeAlias = ConfigSpec
else:
    ModelSpec = spec_model(ModelConfig, name="ModelSpec", exclude=(), choices={"name": tuple(MODELS)})
    TrainSpec = spec_model(TrainConfig, name="TrainSpec")  # .config(seed): the seed is the run's
    GenerationSpec = spec_model(GenerationConfig, name="GenerationSpec")  # .config(seed), likewise


def setting_field(cls: type, name: str, **edge: Any) -> Any:
    """A request field for ``cls.<name>``: optional, with its setting's bounds and help (``edge``:
    what only the API narrows further, e.g. a checkpoint is an uploaded one's sha256 here)."""
    s = next(s for s in schema(cls) if s.name == name)
    return Field(None, description=s.help or None, **{**_constraints(s, narrowed=False), **edge})


class TeacherSpec(_Spec):
    """Weak-to-strong: the model that generates, when it is not the student itself
    (``rsir.recipes.TeacherConfig``).

    ``model`` (a cheap backbone trained on D_k each iteration, with ``train`` or the run's training
    settings), ``checkpoint`` (the sha256 of an uploaded checkpoint, used as is), or ``real_stage``
    (the student teaches after a real-data stage). Given, it replaces the recipe's teacher whole.
    """

    model: ModelSpec | None = setting_field(TeacherConfig, "model")
    checkpoint: str | None = setting_field(TeacherConfig, "checkpoint", pattern=HEX64.pattern)
    train: TrainSpec | None = setting_field(TeacherConfig, "train")
    real_stage: bool | None = setting_field(TeacherConfig, "real_stage")


class RunSpec(_Spec):
    """What ``POST /runs`` accepts: a recipe (``rsir.recipes``) and any field of ``RunConfig`` over it."""

    dataset: str = Field(description=f"a benchmark ({', '.join(BENCHMARKS)}), '{SYNTHETIC}', or the version "
                                     "(sha256) of an uploaded dataset")
    name: str | None = Field(None, max_length=100)
    recipe: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                               description="a named recipe (GET /recipes); default: the dataset's own recipe, "
                                           "else 'default'")
    iterations: int | None = setting_field(RunConfig, "iterations")
    student: ModelSpec | None = setting_field(RunConfig, "student")
    teacher: TeacherSpec | None = setting_field(RunConfig, "teacher")
    train: TrainSpec | None = setting_field(RunConfig, "train")
    generation: GenerationSpec | None = setting_field(RunConfig, "generation")
    seed: int | None = setting_field(RunConfig, "seed")
    early_stop: int | None = setting_field(RunConfig, "early_stop")
    significance: bool | None = setting_field(RunConfig, "significance")
    warm_start: bool | None = setting_field(RunConfig, "warm_start")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if value in BENCHMARKS or value == SYNTHETIC or HEX64.fullmatch(value):
            return value
        raise ValueError(f"must be a benchmark ({', '.join(BENCHMARKS)}), '{SYNTHETIC}' or a dataset version "
                         "(64 lowercase hex digits)")

    _resolved: tuple[str, RunConfig] = PrivateAttr()

    @model_validator(mode="after")
    def _resolves(self) -> RunSpec:
        """Resolve the recipe once, at validation; a bad combination gets a 422 naming its field."""
        try:
            self._resolved = resolve(self.recipe, self.dataset, self.overrides())
        except ConfigError as exc:
            raise located(exc, self) from None
        return self

    def overrides(self) -> dict[str, Any]:
        """The fields given beside the recipe, shaped like a recipe file."""
        return self.model_dump(exclude_none=True, exclude={"dataset", "name", "recipe"})

    def resolve(self) -> tuple[str, RunConfig]:
        """The recipe's name and the run's configuration, as resolved when the request was validated."""
        return self._resolved


class RunCreated(BaseModel):
    id: str
    status: str
    url: str
    events: str


class RunView(BaseModel):
    """A run's state: stage, iteration, metrics per iteration, generation statistics, timings."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    status: str
    stage: str
    iteration: int
    iterations_total: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    spec: dict[str, Any]
    datasets: list[str]
    iterations: list[dict[str, Any]]
    progress: dict[str, Any] | None = None
    selected: int | None = None
    stopped_by: str | None = None


class DatasetView(BaseModel):
    """A dataset version and its lineage (parent, teacher checkpoint, settings, statistics)."""

    model_config = ConfigDict(extra="allow")

    version: str
    name: str
    size: int
    created_at: float
    source: str
    parent: str | None = None
    stats: dict[str, Any]


class CheckpointView(BaseModel):
    """An uploaded checkpoint: its sha256 (a run's ``teacher.checkpoint``), model and size."""

    model_config = ConfigDict(extra="allow")

    sha256: str
    model: dict[str, Any]
    num_items: int
