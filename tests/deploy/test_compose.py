"""docker-compose.yml: valid for Compose v2, wired consistently, and documented in .env.example."""

from __future__ import annotations

import json
import re

import pytest
from deploy_helpers import ROOT, SERVICES, compose_config, compose_run, dockerfile, exec_form, image_env

from services.generator.settings import GeneratorSettings
from services.orchestrator.settings import OrchestratorSettings
from services.trainer.settings import TrainerSettings

PORTS = {"trainer": 50051, "generator": 50052, "orchestrator": 8000}


@pytest.fixture(scope="module")
def config():
    return compose_config()


def test_compose_config_is_valid_alone_and_with_the_gpu_override():
    assert compose_run("config", "--quiet").returncode == 0
    gpu = compose_run("-f", str(ROOT / "deploy/docker/compose.gpu.yml"), "config", "--format", "json")
    assert gpu.returncode == 0, gpu.stderr
    for name, service in json.loads(gpu.stdout)["services"].items():
        if name in ("trainer", "generator"):
            assert service["environment"][f"{name.upper()}_DEVICE"] == "cuda"
            assert service["image"].endswith("-cuda") and "cu" in service["build"]["args"]["TORCH_INDEX"]
            devices = service["deploy"]["resources"]["reservations"]["devices"]
            assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        else:
            assert "deploy" not in service


def test_compose_names_a_missing_secret_instead_of_starting_without_it(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = compose_run("config", "--quiet", env_file=empty)
    assert proc.returncode != 0 and re.search("S3_(ACCESS|SECRET)_KEY", proc.stderr), proc.stderr
    assert "cp .env.example .env" in proc.stderr


def test_every_service_is_healthchecked_and_waits_for_healthy_dependencies(config):
    services = config["services"]
    assert set(services) == {"redis", "seaweedfs", "data", *SERVICES}
    for name, service in services.items():
        if name != "data":  # a one-shot job: it exits
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency == "data" else "service_healthy"
            assert condition["condition"] == wanted, (name, dependency)
    assert set(services["orchestrator"]["depends_on"]) == {"redis", "seaweedfs", "trainer", "generator", "data"}


def test_redis_appends_to_a_volume_and_seaweedfs_creates_the_bucket_the_services_use(config):
    services = config["services"]
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert [(v["type"], v["target"]) for v in redis["volumes"]] == [("volume", "/data")]
    weed = services["seaweedfs"]
    assert weed["command"][0] == "mini" and "-dir=/data" in weed["command"]
    assert [(v["type"], v["target"]) for v in weed["volumes"]] == [("volume", "/data")]
    bucket = next(a.split("=", 1)[1] for a in weed["command"] if a.startswith("-bucket="))
    assert f"/buckets/{bucket}/" in weed["healthcheck"]["test"][1]
    s3_port = next(a.split("=", 1)[1] for a in weed["command"] if a.startswith("-s3.port="))
    for name in SERVICES:
        env, prefix = services[name]["environment"], name.upper() + "_"
        assert env[f"{prefix}STORAGE_URL"] == f"s3://{bucket}"
        assert env[f"{prefix}S3_ENDPOINT"] == f"http://seaweedfs:{s3_port}"
        assert env[f"{prefix}S3_ACCESS_KEY"] == weed["environment"]["AWS_ACCESS_KEY_ID"]
        assert env[f"{prefix}S3_SECRET_KEY"] == weed["environment"]["AWS_SECRET_ACCESS_KEY"]
    assert services["orchestrator"]["environment"]["ORCHESTRATOR_REDIS_URL"] == "redis://redis:6379/0"


def test_ports_commands_and_healthchecks_agree_with_the_images(config):
    services = config["services"]
    for name in SERVICES:
        service, image, prefix = services[name], dockerfile(name), name.upper() + "_"
        port = PORTS[name]
        assert service["command"] == exec_form(image["CMD"][-1]) == ["python", "-m", f"services.{name}"]
        assert service["environment"][f"{prefix}PORT"] == image_env(name)[f"{prefix}PORT"] == str(port)
        assert image["EXPOSE"] == [str(port)]
        probe, image_probe = service["healthcheck"]["test"][1], exec_form(image["HEALTHCHECK"][0])[-1]
        assert f"127.0.0.1:$${{{prefix}PORT}}" in probe and f"127.0.0.1:${{{prefix}PORT}}" in image_probe
        if name == "orchestrator":
            assert probe.endswith("/readyz") and image_probe.endswith("/healthz")
        else:
            full = f"--service rsir.api.v1.{name.capitalize()}"
            assert probe.startswith("python -m services.common.healthcheck") and probe.endswith(full)
            assert image_probe.startswith("python -m services.common.healthcheck") and image_probe.endswith(full)
    assert services["trainer"]["expose"] == ["50051"] and services["generator"]["expose"] == ["50052"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in services["orchestrator"]["ports"]] == [
        ("127.0.0.1", "8000", 8000)]
    orchestrator = services["orchestrator"]["environment"]
    assert orchestrator["ORCHESTRATOR_TRAINER_ADDR"] == "trainer:50051"
    assert orchestrator["ORCHESTRATOR_GENERATOR_ADDRS"] == "dns:///generator:50052"
    assert "container_name" not in services["generator"] and "ports" not in services["generator"]  # --scale works


def test_every_build_takes_torch_from_the_dockerfile_default_index_or_the_one_env_names(config, tmp_path):
    services = config["services"]
    for name in (*SERVICES, "data"):
        build = services[name]["build"]
        dockerfile_name = build["dockerfile"].rsplit("/", 1)[-1].removesuffix(".Dockerfile")
        default = next(a.split("=", 1)[1] for a in dockerfile(dockerfile_name)["ARG"] if a.startswith("TORCH_INDEX="))
        assert build["args"]["TORCH_INDEX"] == default, name
    mirror = "https://wheels.example/torch-cpu/simple"
    env_file = tmp_path / "mirror.env"
    env_file.write_text((ROOT / ".env.example").read_text() + f"TORCH_INDEX={mirror}\n")
    proc = compose_run("config", "--format", "json", env_file=env_file)
    assert proc.returncode == 0, proc.stderr
    assert {n: s["build"]["args"]["TORCH_INDEX"] for n, s in json.loads(proc.stdout)["services"].items()
            if "build" in s} == dict.fromkeys((*SERVICES, "data"), mirror)


def test_the_benchmark_volume_is_where_the_orchestrator_reads_benchmarks(config):
    services = config["services"]
    data = services["data"]
    assert "rsir data download $$b --data-dir /data" in data["command"][-1]
    assert data["image"] == services["orchestrator"]["image"]
    assert services["orchestrator"]["environment"]["ORCHESTRATOR_DATA_DIR"] == "/data"
    mounts = {(v["source"], v["target"], v.get("read_only", False)) for v in services["orchestrator"]["volumes"]}
    assert mounts == {("data", "/data", True)} and data["volumes"][0]["target"] == "/data"


def test_env_example_documents_every_variable_compose_reads_and_every_service_setting():
    documented = (ROOT / ".env.example").read_text()
    compose_text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "deploy/docker/compose.gpu.yml").read_text()
    for var in set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", compose_text)):
        assert re.search(rf"^#? ?{var}=", documented, re.M), f".env.example does not document {var}"
    for prefix, cls in (("ORCHESTRATOR_", OrchestratorSettings), ("TRAINER_", TrainerSettings),
                        ("GENERATOR_", GeneratorSettings)):
        for field in cls.model_fields:
            assert f"{prefix}{field.upper()}" in documented, f".env.example does not mention {prefix}{field.upper()}"
