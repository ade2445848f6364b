# ChatService images. One Dockerfile, two targets that share every layer but the last:
#   docker build --target service  -t chatservice:dev .           (the default target)
#   docker build --target operator -t chatservice-operator:dev .
# Both hold the same virtualenv (one distribution ships both packages); the targets differ in
# their default command, exposed ports and labels, so each Deployment names what it runs.
#
# Reproducible: the base image is pinned by digest (`make pin-base-image` moves it to the tag's
# current digest) and every Python package comes from a lock file with hashes (`make lock`).
# No `# syntax=` line: the builder's own frontend, rather than an unpinned frontend image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv

WORKDIR /src

# The runtime virtualenv has no pip of its own: the build stage's pip installs into it, so the
# final image carries no installer.
RUN python -m venv --without-pip "${VIRTUAL_ENV}"

# Dependencies get a layer of their own, keyed on the lock files alone, so a source change
# rebuilds only the small layers below. The build backend (hatchling) goes into the build
# stage's own Python, from its lock; the runtime virtualenv gets the runtime lock only.
COPY requirements.lock requirements-build.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements-build.lock \
 && pip --python "${VIRTUAL_ENV}/bin/python" install --no-cache-dir --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY service/ service/
COPY operator/ operator/
# --no-build-isolation: the locked hatchling, not whatever version an isolated build would fetch.
# Bytecode is compiled here (pip's default) because the root filesystem is read-only at run time.
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
 && pip --python "${VIRTUAL_ENV}/bin/python" install --no-cache-dir --no-deps /tmp/dist/*.whl

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed UID/GID (above 10000, outside any host range) so runAsUser in the chart and the
# operator's pods matches the files' owner without a lookup in /etc/passwd. The base image's
# own pip is removed: nothing installs at run time.
RUN groupadd --system --gid 10001 chatservice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin chatservice \
 && python -m pip uninstall --no-cache-dir --yes --root-user-action=ignore pip setuptools wheel \
 && rm -rf /root/.cache

COPY --from=build /opt/venv /opt/venv

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only; bytecode was compiled at build.
# PROMETHEUS_MULTIPROC_DIR is deliberately not set here: it must name a per-pod emptyDir, which
# the operator mounts and sets; a default pointing at a missing directory would break
# single-process commands such as `chatservice migrate`.
# CHATSERVICE_HOST: a container is reached through its pod's address (development binds
# 127.0.0.1).
ENV PATH=/opt/venv/bin:${PATH} \
    VIRTUAL_ENV=/opt/venv \
    CHATSERVICE_HOST=0.0.0.0 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Declared here, after the slow layers: a changed build argument invalidates only what follows.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="ChatService" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

WORKDIR /tmp
USER 10001:10001

# ---------------------------------------------------------------------------------------------
FROM runtime AS operator

LABEL org.opencontainers.image.title="chatservice-operator" \
      org.opencontainers.image.description="Kopf operator that runs ChatService custom resources"

# 8080: liveness (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090
CMD ["chatservice-operator"]

# ---------------------------------------------------------------------------------------------
# Last, so a plain `docker build .` gives the service image.
FROM runtime AS service

LABEL org.opencontainers.image.title="chatservice" \
      org.opencontainers.image.description="OpenAI-compatible chat-completions service (also runs its migrations: chatservice migrate)"

EXPOSE 8000
CMD ["chatservice", "run"]
