# syntax=docker/dockerfile:1
# One image for masters and workers: `agentflow master ...` or `agentflow worker ...`
# (deploy/compose.yaml, deploy/kubernetes/). Checked by hadolint in tests/deploy.

# -- build: the package and its dependencies into a venv, with pip and the build tools ---------
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/agentflow \
    && /opt/agentflow/bin/pip install --no-cache-dir .

# -- run: the venv alone, as an unprivileged user ----------------------------------------------
FROM python:3.12-slim-bookworm
RUN groupadd --system --gid 10001 agentflow \
    && useradd --system --uid 10001 --gid agentflow --no-create-home \
        --home-dir /var/lib/agentflow --shell /usr/sbin/nologin agentflow \
    && install -d -o agentflow -g agentflow -m 0750 /var/lib/agentflow
COPY --from=build /opt/agentflow /opt/agentflow
ENV PATH=/opt/agentflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AGENTFLOW_DATA_DIR=/var/lib/agentflow
WORKDIR /var/lib/agentflow
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
VOLUME ["/var/lib/agentflow"]
# The API (and worker sessions), then the peer (Raft) port.
EXPOSE 6767 6768
# A master's liveness probe by default; a worker sets HEALTHCHECK_URL to its --metrics-port.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL') or 'http://127.0.0.1:%s/health' % os.environ.get('AGENTFLOW_PORT', '6767'), timeout=4)"]
CMD ["agentflow", "master"]
