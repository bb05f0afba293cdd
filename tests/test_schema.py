"""One schema: ``rsir.config`` states every setting once, and the CLI, the run API and the protos agree.

A field added in one place only, or a range the API states differently from the core, fails here.
τ = ∞ has one representation: "inf" in JSON, the double ``inf`` in the proto.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from rsir import jsonio
from rsir.config import GenerationConfig, ModelConfig, Setting, TrainConfig, from_dict, schema, to_dict
from rsir.errors import ConfigError
from rsir.flags import add_config_flags, config_from_args
from rsir.recipes import RunConfig, TeacherConfig
from rsir_api.v1 import common_pb2, generator_pb2, trainer_pb2
from services.common.convert import config_from_message, config_to_message
from services.orchestrator.schemas import GenerationSpec, ModelSpec, RunSpec, TeacherSpec, TrainSpec

# config, its API model and where it sits in a run spec, the fields the API leaves to the run, its proto message
CONFIGS = [
    (ModelConfig, ModelSpec, "student", set(), common_pb2.ModelSpec),
    (TrainConfig, TrainSpec, "train", {"seed"}, trainer_pb2.TrainSpec),
    (GenerationConfig, GenerationSpec, "generation", {"seed"}, generator_pb2.GenerationSpec),
]
# Other fields a boundary value needs to pass the cross-field rules.
COMPANIONS = {(ModelConfig, "dim"): {"heads": 1}, (GenerationConfig, "min_len"): {"max_len": 4096},
              (GenerationConfig, "max_len"): {"min_len": 2}}
ids = pytest.mark.parametrize(("cls", "spec", "section", "excluded", "message"), CONFIGS,
                              ids=[c[0].__name__ for c in CONFIGS])


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _flags(cls: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, cls)
    return parser


@ids
def test_every_field_is_in_every_place(cls, spec, section, excluded, message):
    fields = _fields(cls)
    assert set(spec.model_fields) | excluded == fields and not set(spec.model_fields) & excluded
    prefix = cls.__name__ + "."
    assert {a.dest.removeprefix(prefix) for a in _flags(cls)._actions if a.dest.startswith(prefix)} == fields
    assert set(message.DESCRIPTOR.fields_by_name) == fields
    assert {s.name for s in schema(cls)} == fields and all(s.help for s in schema(cls))


@ids
def test_help_texts_reach_the_cli_and_the_api(cls, spec, section, excluded, message):
    text = "".join(_flags(cls).format_help().split())  # argparse rewraps the lines
    for s in schema(cls):
        assert "".join(s.help.split()) in text
        if s.name not in excluded:
            assert spec.model_fields[s.name].description == s.help


def _outside_and_boundary(s: Setting) -> list[tuple[float, float | None]]:
    """Per bound: a value just outside it, and the boundary value if it is allowed."""
    step = (lambda v, d: v + d) if s.kind is int else (lambda v, d: math.nextafter(v, d * math.inf))
    cases: list[tuple[float, float | None]] = []
    if s.ge is not None:
        cases.append((step(s.ge, -1), s.ge))
    if s.gt is not None:
        cases.append((s.gt, step(s.gt, 1)))
    if s.le is not None:
        cases.append((step(s.le, 1), s.le))
    if s.lt is not None:
        cases.append((s.lt, step(s.lt, -1)))
    return cases


def _bounded() -> list[tuple[tuple, Setting]]:
    return [(config, s) for config in CONFIGS for s in schema(config[0]) if s.bounds() and s.name not in config[3]]


@pytest.mark.parametrize(("config", "setting"), _bounded(), ids=[f"{c[0].__name__}.{s.name}" for c, s in _bounded()])
def test_the_api_ranges_are_the_core_ranges(config, setting):
    cls, spec, section, _, _ = config
    companions = COMPANIONS.get((cls, setting.name), {})
    for outside, boundary in _outside_and_boundary(setting):
        errors = _errors({"dataset": "synthetic", section: {setting.name: outside}})
        assert [section, setting.name] in [e["loc"][1:] for e in errors], (outside, errors)
        with pytest.raises(ConfigError, match=f"^{setting.name}: must be"):
            cls(**{setting.name: outside})
        assert spec.model_validate({setting.name: boundary, **companions}).values()[setting.name] == boundary
        assert getattr(cls(**{setting.name: boundary, **companions}), setting.name) == boundary


@pytest.mark.parametrize(("section", "field", "bad", "good"), [
    ("student", "name", "bert4rec", ["sasrec", "gru"]),
    ("train", "loss", "softmax", ["ce", "sampled"]),
    ("train", "device", "gpu", ["auto", "cpu", "cuda", "cuda:1"]),
    ("generation", "prefix", "middle", ["first", "random"]),
    ("generation", "target", "past", ["remaining", "future"]),
    ("generation", "sources", "some", ["real", "all"]),
])
def test_choices_and_patterns_are_the_core_ones(section, field, bad, good):
    assert [section, field] in [e["loc"][1:] for e in _errors({"dataset": "synthetic", section: {field: bad}})]
    for value in good:
        assert RunSpec.model_validate({"dataset": "synthetic", section: {field: value}})


def test_cross_field_rules_are_422s_naming_the_field():
    cases = [("student", {"dim": 30, "heads": 4}, "heads"), ("generation", {"min_len": 9, "max_len": 8}, "max_len"),
             ("train", {"lr": 10, "finetune_lr_scale": 2}, "finetune_lr_scale")]
    for section, values, field in cases:
        errors = _errors({"dataset": "synthetic", section: values})
        assert [(e["loc"][1:], e["msg"].split(":")[0]) for e in errors] == [([section, field], field)]


def _errors(body: dict) -> list[dict]:
    response = TestClient(_echo_app()).post("/runs", json=body)
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def _echo_app() -> FastAPI:
    """The run spec as the run API takes it in and writes it out, without the services behind it."""
    app = FastAPI()

    @app.post("/runs")
    def echo(spec: RunSpec) -> RunSpec:
        return spec

    return app


@pytest.mark.parametrize("written", ["inf", "INF", "Infinity", "+inf"])
def test_infinite_tau_is_the_string_inf_in_json(written):
    echoed = TestClient(_echo_app()).post("/runs", json={"dataset": "synthetic", "generation": {"tau": written}})
    assert echoed.status_code == 200 and echoed.json()["generation"]["tau"] == "inf"
    spec = RunSpec.model_validate_json(echoed.text)
    assert math.isinf(spec.generation.config(0).tau)
    assert json.loads(spec.model_dump_json())["generation"]["tau"] == "inf"
    assert math.isinf(from_dict(GenerationConfig, {"tau": written}).tau)


def test_a_json_number_tau_still_reads():
    echoed = TestClient(_echo_app()).post("/runs", json={"dataset": "synthetic", "generation": {"tau": 7}})
    assert echoed.json()["generation"]["tau"] == 7
    assert RunSpec.model_validate(echoed.json()).generation.config(0).tau == 7


def test_infinite_tau_round_trips_through_json_proto_and_flags():
    config = GenerationConfig(tau=math.inf, seed=3)
    text = jsonio.dumps(to_dict(config))
    assert json.loads(text)["tau"] == "inf"
    assert from_dict(GenerationConfig, jsonio.loads(text)) == config
    message = config_to_message(config, generator_pb2.GenerationSpec)
    wire = generator_pb2.GenerationSpec.FromString(message.SerializeToString())
    assert wire.tau == math.inf and config_from_message(GenerationConfig, wire, "config") == config
    parser = _flags(GenerationConfig)
    assert math.isinf(config_from_args(parser.parse_args(["--tau", "inf"]), GenerationConfig).tau)


def test_from_dict_builds_nested_configs_and_names_their_fields():
    @dataclasses.dataclass(frozen=True)
    class Outer:
        model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
        generation: GenerationConfig | None = None

    outer = from_dict(Outer, {"model": {"dim": 8}, "generation": {"tau": "inf"}})
    assert outer.model == ModelConfig(dim=8) and math.isinf(outer.generation.tau)
    with pytest.raises(ConfigError, match=r"^model\.heads: must divide dim \(30\)"):
        from_dict(Outer, {"model": {"dim": 30, "heads": 4}})


@pytest.mark.parametrize(("spec", "config", "edge"), [(RunSpec, RunConfig, {"dataset", "name", "recipe"}),
                                                      (TeacherSpec, TeacherConfig, set())])
def test_the_run_spec_mirrors_the_run_config(spec, config, edge):
    """Every field of a run's configuration can be given beside a recipe, with the bounds of its setting."""
    assert set(spec.model_fields) == {f.name for f in dataclasses.fields(config)} | edge
    for s in schema(config):
        for bound, value in s.bounds().items():
            outside = value - 1 if bound in ("ge", "gt") else value + 1
            with pytest.raises(ValidationError) as caught:
                spec.model_validate({**({"dataset": "synthetic"} if edge else {}), s.name: outside})
            assert caught.value.errors()[0]["loc"][0] == s.name
