"""Wall time of generating through the generator service against calling ``rsir.generation`` in-process.

Usage: ``python bench/streaming_overhead.py --data beauty [--checkpoint model.pt]``. The service is a
real ``python -m services.generator`` process on a loopback port with local-directory storage; both
paths generate the same shard with the same settings (and must return the same sequences). Each
path runs once to warm up (the service loads the checkpoint and dataset into its caches), then
``--repeats`` times alternately; the median is reported. Writes
``bench/results/streaming-overhead-<data>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rsir import jsonio
from rsir.checkpoint import checkpoint_bytes, load_checkpoint
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.generation import generate
from rsir.resources import machine
from rsir.sources import load_dataset
from rsir.training import train
from services.common.artifacts import BlobRef, publish_dataset
from services.common.healthcheck import health_status
from services.common.storage import LocalStore
from services.generator.client import GeneratorClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVICE = "rsir.api.v1.Generator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_generator(store: LocalStore, checkpoint_uri: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = os.environ | {"GENERATOR_HOST": "127.0.0.1", "GENERATOR_PORT": str(port), "GENERATOR_DEVICE": "cpu",
                        "GENERATOR_STORAGE_URL": store.root.as_uri(), "GENERATOR_PRELOAD": f'["{checkpoint_uri}"]'}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.generator"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while health_status(address, SERVICE, timeout=1) != "SERVING":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"the generator did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc, address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="beauty")
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--train-seconds", type=float, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tau", type=float, default=20)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--m", type=int, default=5)
    args = parser.parse_args()

    dataset = load_dataset(args.data, args.data_dir)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
        blob = args.checkpoint.read_bytes()
    else:
        model = train(dataset, ModelConfig(), TrainConfig(batch_size=64, time_budget=args.train_seconds),
                      progress=False).model
        blob = checkpoint_bytes(model, None, dataset.version, None)
    config = GenerationConfig(tau=args.tau, p=args.p, m=args.m)

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "objects")
        checkpoint = BlobRef(store.put("checkpoints/bench.pt", blob).uri)
        dataset_ref = publish_dataset(store, dataset)
        proc, address = start_generator(store, checkpoint.uri, Path(tmp) / "generator.log")
        try:
            with GeneratorClient(address) as client:
                def in_process() -> list:
                    return [s.tolist() for b in generate(model, dataset, config) for s in b.sequences]

                def through_service() -> list:
                    batches, _ = client.generate(checkpoint, dataset_ref, config).collect()
                    return [s.tolist() for b in batches for s in b.sequences]

                timings: dict[str, list[float]] = {"in_process": [], "service": []}
                outputs = {}
                for repeat in range(args.repeats + 1):
                    for name, call in (("in_process", in_process), ("service", through_service)):
                        start = time.perf_counter()
                        outputs[name] = call()
                        if repeat:  # the first round warms both paths up
                            timings[name].append(time.perf_counter() - start)
                        else:
                            print(f"warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)

    median = {name: statistics.median(values) for name, values in timings.items()}
    row = {
        "data": args.data, "generation": vars(config), "sequences": len(outputs["service"]),
        "same_output": outputs["service"] == outputs["in_process"],
        "seconds": timings, "median_seconds": median,
        "overhead": median["service"] / median["in_process"] - 1.0,
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }
    out = HERE / "results" / f"streaming-overhead-{args.data}.json"
    out.parent.mkdir(exist_ok=True)
    jsonio.write(out, row)
    print(json.dumps({k: row[k] for k in ("sequences", "same_output", "median_seconds", "overhead")}, indent=2))


if __name__ == "__main__":
    main()
