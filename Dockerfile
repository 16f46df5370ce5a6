# One image for every Lakeserve role: `lakeserve train | serve | rag ingest | chat`, the Ray head
# and workers of the Serve app (KubeRay runs `ray start` in it), `mlflow server`, `chroma run`.
# Build: docker build -t lakeserve:dev .
# Run:   docker run --rm -p 8000:8000 -e LAKESERVE_HTTP_HOST=0.0.0.0 -v lakeserve-data:/data \
#          lakeserve:dev serve   (the API binds 127.0.0.1 unless told otherwise)

# Build arguments (the defaults are what a machine with internet access uses):
#   BASE_IMAGE      a Debian bookworm image with Python 3.11 as `python` (and its headers and venv);
#                   scripts/image.sh makes one with debootstrap where no registry is reachable.
#   TORCH_INDEX_URL the index pip takes the CPU build of torch from; empty: WHEELS only.
#   WHEELS          a directory of prebuilt wheels mounted into the build (buildah --volume), tried
#                   before PyPI: saves the llama.cpp compile when the host has already built it.
#   CA_BUNDLE       a CA bundle pip trusts (mounted too), for networks behind a TLS-inspecting proxy.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# ---- requirements: the project's dependency list, alone -----------------------------------------
# Only this list (and constraints.txt) keys the slow dependency layer below: a change elsewhere in
# pyproject.toml (tool settings, the version) reuses it.
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE defaults to a pinned tag; a build that overrides it pins its own
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /requirements.txt

# ---- deps: the dependencies, compiled into a virtualenv ------------------------------------------
FROM ${BASE_IMAGE} AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WHEELS=""
ARG CA_BUNDLE=""

# llama-cpp-python ships only as source: it needs a C/C++ toolchain and CMake.
# Versions follow the base image's Debian release; exact pins break at each Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src

# This slow layer (llama.cpp compiles for minutes) is reused until the dependency list or
# constraints.txt change.
COPY constraints.txt ./
COPY --from=requirements /requirements.txt ./
# torch comes from PyTorch's CPU index, at the version constraints.txt pins: PyPI's wheel pulls
# GBs of CUDA libraries. Its `+cpu` label is dropped because the index's aarch64 wheels have
# none, and torch's own dependencies come afterwards from PyPI under constraints.txt.
# GGML_NATIVE=OFF: llama.cpp for any x86-64/arm64 CPU, not only the build machine's.
RUN if [ -n "$WHEELS" ]; then export PIP_FIND_LINKS="$WHEELS"; fi \
    && if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
    && python -m venv /opt/venv \
    && torch_version="$(sed -n 's/^torch==\([^+]*\).*/\1/p' constraints.txt)" \
    && if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; else export PIP_NO_INDEX=1; fi \
    && pip install --no-deps "torch==${torch_version}" \
    && unset PIP_INDEX_URL PIP_NO_INDEX \
    && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install -c /tmp/constraints.txt -r requirements.txt \
    && pip check

# ---- build: the project as a wheel (the code changes often; this stage is quick) ----------------
FROM deps AS build
ARG CA_BUNDLE=""
COPY pyproject.toml README.md ./
COPY lakeserve/ lakeserve/
COPY kernel/ kernel/
COPY lakehouse/ lakehouse/
COPY training/ training/
COPY serving/ serving/
COPY rag/ rag/
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
    && pip wheel --no-deps --wheel-dir /dist .

# ---- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="lakeserve" \
      org.opencontainers.image.description="Lakeserve: Delta lakehouse, MLflow training, Ray Serve, RAG and chat in one image."

# libgomp1: the OpenMP runtime the llama.cpp libraries built above link to (torch and scikit-learn
# bundle their own). wget: the liveness/readiness probes KubeRay adds to Ray pods call it.
# /data: LAKESERVE_HOME lives there, writable by the app user even without a mounted volume.
# profile.d: keeps the venv first on PATH in login shells too (KubeRay's ENABLE_LOGIN_SHELL).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 lakeserve \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin lakeserve \
    && install -d -o 10001 -g 10001 -m 0750 /data \
    && echo "export PATH=/opt/venv/bin:\${PATH}" > /etc/profile.d/lakeserve-venv.sh

# Root-owned and read-only for the app user: the dependencies (a layer reused until they change),
# then the project's wheel on top (a small layer per code change).
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /dist/ /tmp/wheels/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && /opt/venv/bin/pip check \
    && rm -rf /tmp/wheels
WORKDIR /app
# The training configs and the RAG QA sets at the same relative paths as in the repository
# (the CronJobs and Airflow's loop name them so).
COPY training/configs/ training/configs/
COPY rag/qa/ rag/qa/

# HOME=/tmp: Ray, Streamlit and MLflow write dot-directories there; with a read-only root
# filesystem (k8s/) /tmp and /data are the writable mounts.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LAKESERVE_HOME=/data/.lakeserve \
    GIT_PYTHON_REFRESH=quiet \
    ANONYMIZED_TELEMETRY=False \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

USER 10001:10001
# 8000: API (Ray Serve proxy or `lakeserve serve`); 8501: chat page; 8502: chat /metrics.
EXPOSE 8000 8501 8502

# Liveness of the API (the server role); other roles have their own probes in k8s/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/live' % os.environ.get('LAKESERVE_HTTP_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["lakeserve"]
CMD ["--help"]
