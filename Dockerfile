# syntax=docker/dockerfile:1
# driftloop: one image for `driftloop serve`, `driftloop watch`, one-off CLI commands and the MLflow server.
#
#   docker build -t driftloop:latest .
#   docker run -p 8000:8000 -v $PWD/driftloop.yaml:/srv/driftloop/driftloop.yaml:ro driftloop:latest
#
# Stage 1 resolves nothing: it installs exactly what the committed uv.lock says (runtime group only) into
# /opt/venv. Stage 2 copies that venv onto a clean Python image: no uv, no compiler, no dev tools, no cache.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /build
# Dependencies first, in their own layer: a change to driftloop's code does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY src ./src
# --no-editable: the project is installed as a wheel into /opt/venv, so the final image needs no /build.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="driftloop" \
      org.opencontainers.image.description="Keep a tabular model healthy in production" \
      org.opencontainers.image.licenses="Apache-2.0"
# libgomp1: LightGBM's OpenMP runtime, the only shared library the wheels do not bundle.
# Unpinned on purpose: bookworm's security updates replace the version, and a pin would break every build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 driftloop \
    && useradd --system --uid 10001 --gid driftloop --home-dir /var/lib/driftloop --create-home \
       --shell /usr/sbin/nologin driftloop \
    && mkdir -p /srv/driftloop \
    && chown driftloop:driftloop /srv/driftloop
COPY --from=build /opt/venv /opt/venv
# Dask workers started from this image (deploy/k8s/dask) keep glibc's adaptive malloc: see the file.
COPY deploy/dask/distributed.yaml /etc/dask/driftloop-distributed.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRIFTLOOP_HOME=/var/lib/driftloop
# The config (driftloop.yaml) is mounted here; the stores (SQLite files, logs, model cache) live in
# DRIFTLOOP_HOME, a volume shared by the servers and the controller.
WORKDIR /srv/driftloop
VOLUME ["/var/lib/driftloop"]
USER 10001:10001
EXPOSE 8000
# Liveness only: /healthz answers as soon as the process runs. Readiness (/readyz) is the orchestrator's.
# The controller (`driftloop watch`) serves no HTTP; its Compose service and Deployment turn this off.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["driftloop"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
