"""deploy/docker/*.Dockerfile: hadolint-clean, slim, non-root, health-checked, CUDA by build argument.

No Docker daemon runs here, so the images are linted and read, not built.
"""

from __future__ import annotations

import subprocess

import pytest
from deploy_helpers import HADOLINT, ROOT, SERVICES, dockerfile, exec_form


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_finds_nothing(service):
    path = ROOT / "deploy" / "docker" / f"{service}.Dockerfile"
    proc = subprocess.run([str(HADOLINT), "--failure-threshold", "info", "--no-color", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_slim_non_root_health_checked_and_built_from_the_repository_root(service):
    image = dockerfile(service)
    assert image["FROM"] == ["python:3.11-slim"]
    assert image["USER"] == ["10001:10001"] and "--uid 10001" in image["RUN"][-1]
    assert exec_form(image["CMD"][-1]) == ["python", "-m", f"services.{service}"]
    assert len(image["HEALTHCHECK"]) == 1 and "--start-period" in image["HEALTHCHECK"][0]
    copied = {args.split()[0] for args in image["COPY"]}
    assert copied == {"pyproject.toml", "rsir", "rsir_api", "services"}
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in image["ARG"]  # CPU unless a CUDA index is given
    assert any('--index-url "${TORCH_INDEX}"' in run for run in image["RUN"])


def test_dockerignore_admits_only_what_the_images_copy():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "**"
    admitted = {line.lstrip("!").rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == {"pyproject.toml", "README.md", "rsir", "rsir_api", "services"}
