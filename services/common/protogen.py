"""Generate the Python code of the RSIR API from ``protos/`` with grpcio-tools (one command).

``python -m services.common.protogen`` rewrites ``rsir_api/v1/*_pb2*.py[i]`` in the repository;
``--check`` regenerates into a temporary directory and exits 1 when the committed files differ.
The protos sit under ``protos/rsir_api/v1`` and compile with ``-I protos``, so the generated code
imports ``from rsir_api.v1 import common_pb2`` with no path rewriting. grpcio-tools is needed only
here, never to run the services.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository root in a checkout
PACKAGE = "rsir_api/v1"
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(root: Path = ROOT) -> list[Path]:
    files = sorted((root / "protos" / PACKAGE).glob("*.proto"))
    if not files:
        raise FileNotFoundError(f"no .proto files under {root / 'protos' / PACKAGE}; run from a checkout")
    return files


def _protoc(root: Path, *args: str) -> None:
    from grpc_tools import protoc  # build-time tool only

    include = resources.files("grpc_tools") / "_proto"
    if protoc.main(["grpc_tools.protoc", f"-I{root / 'protos'}", f"-I{include}", *args,
                    *map(str, proto_files(root))]) != 0:
        raise RuntimeError("protoc failed; see its messages above")


def generate(out: Path, root: Path = ROOT) -> None:
    """Compile every proto into ``out`` (the repository root for the committed copy)."""
    _protoc(root, f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}")


def drift(root: Path = ROOT) -> list[str]:
    """Generated files under ``root`` that are missing or differ from a fresh compilation."""
    names = [f"{PACKAGE}/{p.stem}{suffix}" for p in proto_files(root) for suffix in SUFFIXES]
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), root)
        return [name for name in names
                if not (root / name).is_file() or not filecmp.cmp(Path(tmp) / name, root / name, shallow=False)]


def descriptor_drift(root: Path = ROOT) -> list[str]:
    """Protos whose importable ``_pb2`` module carries another descriptor than protoc makes now
    (independent of the grpcio-tools version, unlike ``drift``)."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        _protoc(root, f"--descriptor_set_out={out}")
        fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    stale = []
    for file in fresh.file:
        _strip_json_names(file.message_type)  # the Python generator leaves them out of the embedded copy
        module = importlib.import_module(file.name.removesuffix(".proto").replace("/", ".") + "_pb2")
        if descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb) != file:
            stale.append(file.name)
    return stale


def _strip_json_names(messages: Any) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _strip_json_names(message.nested_type)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed code is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.root)
        if stale:
            sys.stderr.write(f"stale generated code: {', '.join(stale)}; run python -m services.common.protogen\n")
            return 1
        return 0
    generate(args.root, args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
