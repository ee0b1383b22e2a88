# syntax=docker/dockerfile:1
# The scoring service. CPU by default; for GPUs build with a CUDA torch index (the wheels bundle
# the CUDA runtime; the host needs the NVIDIA driver and container toolkit), and optionally a CUDA base:
#   docker build -t fraudvae .
#   docker build -t fraudvae:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
# Run with a model directory mounted at /model (or build FROM this image and COPY one there):
#   docker run --rm -p 8000:8000 -v "$PWD/models/v1:/model:ro" fraudvae
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fraudvae ./fraudvae
COPY service ./service
# the project itself, from this checkout; its dependencies' lower bounds are in pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[service,redis]"

FROM ${BASE_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin fraudvae
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FRAUDVAE_MODEL=/model \
    FRAUDVAE_HOST=0.0.0.0 \
    FRAUDVAE_PORT=8000 \
    FRAUDVAE_STATE_DIR=/home/fraudvae/state
USER 10001
WORKDIR /home/fraudvae
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# exec form: the server is PID 1 and gets SIGTERM itself (it drains in-flight requests, exits 0)
CMD ["fraudvae", "serve"]
