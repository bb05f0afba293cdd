# syntax=docker/dockerfile:1
# The trainer (rsir.api.v1.Trainer, gRPC on 50051), built from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t rsir-trainer .
# CPU torch by default. A CUDA image takes torch from a CUDA wheel index of the same release, e.g.
#   docker build -f deploy/docker/trainer.Dockerfile \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t rsir-trainer:cuda .
# (the host then needs the NVIDIA driver and container toolkit; deploy/docker/compose.gpu.yml uses it).
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
# editable: the code runs from /app, read-only for the service user
RUN pip install --no-cache-dir --editable ".[services]" \
 && groupadd --system --gid 10001 rsir \
 && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home rsir \
 && install -d -o rsir -g rsir /state

USER 10001:10001
WORKDIR /state
ENV TRAINER_PORT=50051 \
    TRAINER_STORAGE_URL=/state/objects
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "python -m services.common.healthcheck 127.0.0.1:${TRAINER_PORT} --service rsir.api.v1.Trainer"]
CMD ["python", "-m", "services.trainer"]
