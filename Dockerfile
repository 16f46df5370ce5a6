# One image for every Lakeserve role: `lakeserve train | serve | rag ingest | chat`, the Ray head
# and workers of the Serve app (KubeRay runs `ray start` in it), `mlflow server`, `chroma run`.
# Build: docker build -t lakeserve:dev .

# ---- build: compile the dependencies into a virtualenv -----------------------------------------
FROM python:3.11.14-slim-bookworm AS build

# llama-cpp-python is built from source; it needs a C/C++ toolchain and CMake.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first (this layer is reused until pyproject.toml or constraints.txt change).
# torch: the CPU build from PyTorch's index; PyPI's default wheel is a multi-GB CUDA build.
COPY pyproject.toml constraints.txt README.md ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0+cpu" \
    && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
    && python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install -c /tmp/constraints.txt -r /tmp/requirements.txt

# Then the code, installed without touching the dependencies.
COPY lakehouse/ lakehouse/
COPY training/ training/
COPY serving/ serving/
COPY rag/ rag/
RUN pip install --no-deps .

# ---- runtime ------------------------------------------------------------------------------------
FROM python:3.11.14-slim-bookworm

# wget: the readiness/liveness probes KubeRay adds to Ray pods call it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 lakeserve \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /bin/bash lakeserve

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The training configs at the same relative path as in the repository (CronJobs use them).
COPY training/configs/ training/configs/

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LAKESERVE_HOME=/data/.lakeserve \
    ANONYMIZED_TELEMETRY=False \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

USER 10001:10001
EXPOSE 8000 8501 8502

# Liveness of the API (the default server role); other roles have their own probes in k8s/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/live' % os.environ.get('LAKESERVE_HTTP_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["lakeserve"]
CMD ["--help"]
