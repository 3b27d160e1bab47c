# syntax=docker/dockerfile:1
# The serving image every Ray pod of a fleet runs: Ray (pinned), Ray Serve LLM with the CUDA vLLM
# it is tested with (ray[llm]), and our serving_app package.
#   docker build -f images/serving.Dockerfile -t ghcr.io/modelfleet/modelfleet-serving:0.1.0 .
# Keep RAY_VERSION equal to the ray pin in pyproject.toml and the RayService's rayVersion.

ARG RAY_VERSION=2.60.0

# Builder: only the project wheel (no dependencies); the runtime stage installs it with --no-deps
# so pip cannot move any of the base image's pins.
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY serving_app/ serving_app/
COPY modelfleet_contract/ modelfleet_contract/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Runtime: Ray's own GPU image (CUDA, Python 3.11, Ray at the pinned version, non-root user `ray`).
FROM rayproject/ray:${RAY_VERSION}-py311-gpu
ARG RAY_VERSION

LABEL org.opencontainers.image.title="modelfleet-serving" \
      org.opencontainers.image.description="Ray Serve LLM + vLLM + the ModelFleet serving app" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/ray/.cache/huggingface

COPY --from=builder /wheels /tmp/wheels

# ray[llm] brings vLLM (CUDA) and what ray.serve.llm imports; av and soundfile are vLLM's audio decoders
# (task: transcribe); our wheel adds serving_app, serving_app.haproxy (the HAProxy wrapper in a fleet's
# ConfigMap runs it) and the contract both sides share. The smoke import fails the build if the stack cannot
# load together.
RUN pip install --no-cache-dir "ray[llm]==${RAY_VERSION}" "av>=18.1" "soundfile>=0.14" \
    && pip install --no-cache-dir --no-deps /tmp/wheels/modelfleet-*.whl \
    && python -c "import serving_app.app, serving_app.haproxy, ray.serve.llm, av, soundfile" \
    && rm -rf /tmp/wheels

# Ray's image already runs as the unprivileged `ray` user (uid 1000); say so explicitly.
USER 1000:100
WORKDIR /home/ray
