"""deploy/k8s: the kustomization's resources parse and agree with the services and the compose file
(ports, gRPC health service names, probes, wiring, resource requests); ``kubectl kustomize`` builds
the base, the GPU and multi-GPU overlays and the multi-node PyTorchJob where kubectl is installed."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_helpers import ROOT, SERVICES, compose_config, image_env

from rsir.cli import build_parser
from services.generator.settings import GeneratorSettings
from services.orchestrator.settings import OrchestratorSettings
from services.trainer.settings import TrainerSettings

K8S = ROOT / "deploy" / "k8s"
SETTINGS = {"trainer": TrainerSettings, "generator": GeneratorSettings, "orchestrator": OrchestratorSettings}


def load(directory) -> dict[tuple[str, str], dict[str, Any]]:
    """Every document of the resources a kustomization lists, by (kind, name)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((directory / resource).read_text()):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in docs, f"{key} defined twice"
            docs[key] = doc
    return docs


@pytest.fixture(scope="module")
def docs():
    return load(K8S / "base")


def container(docs, kind: str, name: str) -> dict[str, Any]:
    spec = docs[(kind, name)]["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == [name]
    return spec["containers"][0]


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def test_workloads_services_and_storage_are_all_there(docs):
    kinds = {"Namespace": {"rsir"}, "ConfigMap": {"rsir-config"}, "Secret": {"rsir-secrets"},
             "Service": {"redis", "seaweedfs", *SERVICES}, "StatefulSet": {"redis", "seaweedfs"},
             "Deployment": set(SERVICES), "PersistentVolumeClaim": {"benchmarks"}}
    assert {(k, n) for k, names in kinds.items() for n in names} == set(docs)
    for kind, name in docs:
        if kind in ("Deployment", "StatefulSet"):
            labels = docs[(kind, name)]["spec"]["template"]["metadata"]["labels"]
            assert docs[(kind, name)]["spec"]["selector"]["matchLabels"] == labels == docs[("Service", name)][
                "spec"]["selector"]


def test_redis_persists_an_append_only_file(docs):
    redis = docs[("StatefulSet", "redis")]
    c = container(docs, "StatefulSet", "redis")
    assert c["args"][c["args"].index("--appendonly") + 1] == "yes"
    assert [m["mountPath"] for m in c["volumeMounts"]] == [c["args"][c["args"].index("--dir") + 1]]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == c["volumeMounts"][0]["name"]
    assert c["image"] == compose_config()["services"]["redis"]["image"]


def test_every_container_requests_resources(docs):
    for (kind, name), doc in docs.items():
        if kind in ("Deployment", "StatefulSet"):
            spec = doc["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]), f"{name}/{c['name']}"


@pytest.mark.parametrize("name", ["trainer", "generator"])
def test_grpc_services_use_native_probes_on_their_port_and_health_service(docs, name):
    compose = compose_config()["services"][name]["environment"]
    c, prefix = container(docs, "Deployment", name), name.upper() + "_"
    port = int(compose[f"{prefix}PORT"])
    assert env(c)[f"{prefix}PORT"] == str(port) == image_env(name)[f"{prefix}PORT"]
    assert [p["containerPort"] for p in c["ports"]] == [port]
    assert [p["port"] for p in docs[("Service", name)]["spec"]["ports"]] == [port]
    for probe in ("startupProbe", "readinessProbe"):
        assert c[probe]["grpc"] == {"port": port, "service": f"rsir.api.v1.{name.capitalize()}"}
    assert c["livenessProbe"]["grpc"] == {"port": port}
    assert "command" not in c and "args" not in c  # the image's CMD: python -m services.<name>
    assert c["image"] == f"rsir-{name}"


def test_generators_are_replicas_behind_a_headless_service_the_orchestrator_expands(docs):
    generator = docs[("Deployment", "generator")]
    service = docs[("Service", "generator")]["spec"]
    assert generator["spec"]["replicas"] >= 2
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    wiring = env(container(docs, "Deployment", "orchestrator"))
    assert wiring["ORCHESTRATOR_GENERATOR_ADDRS"] == f"dns:///generator:{service['ports'][0]['port']}"
    trainer = docs[("Service", "trainer")]["spec"]["ports"][0]["port"]
    assert wiring["ORCHESTRATOR_TRAINER_ADDR"] == f"trainer:{trainer}"
    redis = docs[("Service", "redis")]["spec"]["ports"][0]["port"]
    assert wiring["ORCHESTRATOR_REDIS_URL"] == f"redis://redis:{redis}/0"


def test_orchestrator_is_single_with_http_probes_and_benchmarks(docs):
    orchestrator = docs[("Deployment", "orchestrator")]["spec"]
    assert orchestrator["replicas"] == 1 and orchestrator["strategy"]["type"] == "Recreate"
    c = container(docs, "Deployment", "orchestrator")
    assert env(c)["ORCHESTRATOR_PORT"] == "8000" == compose_config()["services"]["orchestrator"]["environment"][
        "ORCHESTRATOR_PORT"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert docs[("Service", "orchestrator")]["spec"]["ports"][0]["port"] == 8000
    data = env(c)["ORCHESTRATOR_DATA_DIR"]
    assert [m["mountPath"] for m in c["volumeMounts"]] == [data]
    fetch = orchestrator["template"]["spec"]["initContainers"][0]
    assert "rsir data download $b --data-dir /data" in fetch["command"][-1]
    assert fetch["volumeMounts"][0]["mountPath"] == data


def test_config_and_secret_keys_become_valid_settings_of_every_service(docs):
    config = docs[("ConfigMap", "rsir-config")]["data"]
    secret = docs[("Secret", "rsir-secrets")]["stringData"]
    for name in SERVICES:
        c, prefix = container(docs, "Deployment", name), name.upper() + "_"
        assert [e.get("prefix") for e in c["envFrom"]] == [prefix, prefix]
        fields = SETTINGS[name].model_fields
        assert {k.lower() for k in {*config, *secret}} <= set(fields), name
        pod = docs[("Deployment", name)]["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001  # the images' USER
    weed = container(docs, "StatefulSet", "seaweedfs")
    bucket = next(a.split("=", 1)[1] for a in weed["args"] if a.startswith("-bucket="))
    assert config["STORAGE_URL"] == f"s3://{bucket}"
    assert weed["readinessProbe"]["httpGet"]["path"] == f"/buckets/{bucket}/"
    s3 = next(a.split("=", 1)[1] for a in weed["args"] if a.startswith("-s3.port="))
    assert config["S3_ENDPOINT"] == f"http://seaweedfs:{s3}"


def _kustomize(overlay: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return list(yaml.safe_load_all(proc.stdout))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_kustomize_builds_the_base_and_the_gpu_overlay(docs):
    base = _kustomize("base")
    assert {(d["kind"], d["metadata"]["name"]) for d in base} == set(docs)
    assert all(d["metadata"].get("namespace") == "rsir" for d in base if d["kind"] != "Namespace")
    gpu = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize("gpu")}
    for name in ("trainer", "generator"):
        c = gpu[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["image"] == f"rsir-{name}:latest-cuda"
        assert env(c)[f"{name.upper()}_DEVICE"] == "cuda"
    assert "nvidia.com/gpu" not in gpu[("Deployment", "orchestrator")]["spec"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_kustomize_builds_the_multi_gpu_trainer():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize("multi-gpu")}
    pod = docs[("Deployment", "trainer")]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    gpus = c["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == c["resources"]["requests"]["nvidia.com/gpu"] > 1
    assert env(c)["TRAINER_NPROC"] == str(gpus) and env(c)["TRAINER_DEVICE"] == "cuda"
    assert {"nproc", "device"} <= set(SETTINGS["trainer"].model_fields)
    assert c["image"] == "rsir-trainer:latest-cuda" and {"cpu", "memory"} <= set(c["resources"]["requests"])
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    generator = docs[("Deployment", "generator")]["spec"]["template"]["spec"]["containers"][0]
    assert generator["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_multi_node_training_is_a_pytorchjob_of_rsir_train_under_torchrun():
    job = load(K8S / "multi-node")[("PyTorchJob", "rsir-train")]["spec"]
    nproc = int(job["nprocPerNode"])
    replicas = job["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    for role, spec in replicas.items():
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        assert c["name"] == "pytorch" and c["image"] == "rsir-trainer"
        assert c["command"][:6] == ["python", "-m", "torch.distributed.run", "-m", "rsir.cli", "train"]
        args = build_parser().parse_args(c["command"][5:])  # every flag is one `rsir train` has
        assert args.data == "beauty" and getattr(args, "TrainConfig.device") == "cuda" and args.nproc == 1
        assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == nproc
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["data"] == args.data_dir.as_posix() and mounts["dshm"] == "/dev/shm"
        assert ("runs" in mounts) == (role == "Master")  # rank 0, the only writer, runs in the Master pod
        assert mounts.get("runs", args.out.as_posix()) == args.out.as_posix()
        assert pod["initContainers"][0]["command"][:3] == ["rsir", "data", "download"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_kustomize_builds_the_multi_node_job():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize("multi-node")}
    assert set(docs) == {("PyTorchJob", "rsir-train"), ("PersistentVolumeClaim", "training-runs")}
    for spec in docs[("PyTorchJob", "rsir-train")]["spec"]["pytorchReplicaSpecs"].values():
        assert spec["template"]["spec"]["containers"][0]["image"] == "rsir-trainer:latest-cuda"
    assert all(d["metadata"]["namespace"] == "rsir" for d in docs.values())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) is not installed")
def test_kustomize_builds_the_trainer_service_across_nodes():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize("multi-node-service")}
    trainer = docs[("Deployment", "trainer")]["spec"]["template"]["spec"]["containers"][0]
    peers = docs[("StatefulSet", "trainer-peer")]["spec"]
    peer = peers["template"]["spec"]["containers"][0]
    node0, node = env(trainer), env(peer)
    assert int(node0["TRAINER_NNODES"]) == int(node["TRAINER_NNODES"]) == peers["replicas"] + 1 >= 2
    assert peers["ordinals"]["start"] == 1  # a pod's index is its node rank
    rank = next(e for e in peer["env"] if e["name"] == "TRAINER_NODE_RANK")
    assert rank["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    rdzv = docs[("Service", "trainer-rdzv")]["spec"]
    assert rdzv["clusterIP"] == "None" and rdzv.get("type", "ClusterIP") == "ClusterIP"  # cluster internal
    assert rdzv["selector"] == docs[("Deployment", "trainer")]["spec"]["selector"]["matchLabels"]
    port = rdzv["ports"][0]["port"]
    assert node0["TRAINER_RDZV_HOST"] == node["TRAINER_RDZV_HOST"] == "trainer-rdzv"
    assert node0["TRAINER_RDZV_PORT"] == node["TRAINER_RDZV_PORT"] == str(port)
    assert {"name": "rdzv", "containerPort": port} in trainer["ports"]
    gpus = peer["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == trainer["resources"]["limits"]["nvidia.com/gpu"] == int(node0["TRAINER_NPROC"]) == int(
        node["TRAINER_NPROC"]) and node["TRAINER_DEVICE"] == node0["TRAINER_DEVICE"] == "cuda"
    assert peer["command"] == ["python", "-m", "services.trainer.peer"]
    assert peer["image"] == trainer["image"] == "rsir-trainer:latest-cuda"
    assert docs[("StatefulSet", "trainer-peer")]["metadata"]["namespace"] == "rsir"
    settings = {k.removeprefix("TRAINER_").lower(): v for k, v in node.items() if v is not None}
    assert TrainerSettings(**settings, node_rank=1).rendezvous() is not None  # the peers' env is valid settings
