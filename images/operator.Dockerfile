# syntax=docker/dockerfile:1
# The ModelFleet operator: kopf + the Kubernetes client, nothing of Ray or vLLM.
#   docker build -f images/operator.Dockerfile -t ghcr.io/modelfleet/modelfleet-operator:0.1.0 .
# Runs as uid 65532 with a read-only root filesystem (manifests/deployment.yaml mounts an emptyDir at /tmp).

# Builder: the project wheel, installed with the `operator` extra into a venv that the final stage copies.
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/modelfleet

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY serving_app/ serving_app/
COPY modelfleet_contract/ modelfleet_contract/

# pip compiles the .pyc files here, so nothing needs writing at runtime.
RUN /opt/modelfleet/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/modelfleet/bin/pip install --no-cache-dir "$(ls /wheels/modelfleet-*.whl)[operator]" \
    && /opt/modelfleet/bin/modelfleet --help > /dev/null

# Runtime: the same Python, the venv, no build tools, no root.
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="modelfleet-operator" \
      org.opencontainers.image.description="Kubernetes operator for fleets of LLMs on KubeRay RayService" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /opt/modelfleet /opt/modelfleet

ENV PATH=/opt/modelfleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090

ENTRYPOINT ["modelfleet", "operator"]
