# syntax=docker/dockerfile:1
# The orchestrator (run API and dashboard on 8000), built from the repository root:
#   docker build -f deploy/docker/orchestrator.Dockerfile -t rsir-orchestrator .
# CPU torch only: it merges and versions datasets; training and generation run in the other services.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# torch first: the largest layer, rebuilt only when its version or index changes
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY rsir ./rsir
COPY rsir_api ./rsir_api
COPY services ./services
# editable: the code (dashboard templates included) runs from /app, read-only for the service user
RUN pip install --no-cache-dir --editable ".[orchestrator]" \
 && groupadd --system --gid 10001 rsir \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home rsir \
 && install -d -o rsir -g rsir /state /data

USER 10001:10001
WORKDIR /state
# /state: the embedded Redis and local storage when no ORCHESTRATOR_REDIS_URL / STORAGE_URL is given;
# /data: benchmark files for "dataset": "beauty" etc. (rsir data download beauty --data-dir /data)
ENV ORCHESTRATOR_HOST=0.0.0.0 \
    ORCHESTRATOR_PORT=8000 \
    ORCHESTRATOR_STATE_DIR=/state \
    ORCHESTRATOR_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' http://127.0.0.1:${ORCHESTRATOR_PORT}/healthz"]
CMD ["python", "-m", "services.orchestrator"]
