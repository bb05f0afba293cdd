"""The core library stands alone: no rsir module imports a service library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import rsir

BLOCKED = ("grpc", "fastapi", "redis", "boto3", "botocore", "starlette", "uvicorn")

PROBE = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("core imported " + name)
sys.meta_path.insert(0, Block())
for name in {modules!r}:
    importlib.import_module(name)
"""


def test_core_imports_no_service_library():
    modules = sorted(m.name for m in pkgutil.walk_packages(rsir.__path__, "rsir."))
    assert "rsir.training" in modules and "rsir.models.hstu" in modules
    code = PROBE.format(blocked=BLOCKED, modules=modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
