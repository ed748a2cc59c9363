# scgan-colorize: the REST service (and the training CLI) in one image.
#
#   GPU (default):  docker build -t scgan-colorize:0.1.0 .
#   CPU only:       docker build -t scgan-colorize:0.1.0-cpu \
#                     --build-arg BASE_IMAGE=ubuntu:24.04 \
#                     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
#                     --build-arg RUNTIME_APT_PACKAGES="g++ python3-dev" .
#
# BASE_IMAGE's CUDA must match the CUDA of the pinned torch wheels (torch==2.14.1 from PyPI is
# built against CUDA 13.0, torch.version.cuda == "13.0"); tests/deploy checks the two agree.
# The base image only needs apt and a python3 >= 3.11 package: Ubuntu 24.04 and Debian 12 both work.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# python-base: the interpreter and the few system packages both stages need.
FROM ${BASE_IMAGE} AS python-base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# tini: a real PID 1 (forwards SIGTERM to the server, reaps children) so shutdown drains cleanly.
# Not version-pinned (DL3008): BASE_IMAGE is a build argument, so the distribution and its
# package versions are the base image's; pin the base image by digest for reproducible builds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------
# builder: a venv with the pinned dependencies, then the project itself (not editable).
FROM python-base AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
# Where torch and torchvision come from. Empty: PyPI (the CUDA build). For a CPU-only image:
# https://download.pytorch.org/whl/cpu. PIP_INDEX_URL / PIP_EXTRA_INDEX_URL select a mirror.
ARG TORCH_INDEX_URL=""
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (their layer survives code changes): pyproject's list, under the exact
# versions of docker/constraints.txt (the environment the tests ran in).
COPY pyproject.toml README.md docker/constraints.txt ./
RUN python3 -m venv /opt/venv \
    && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
       > requirements.txt \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
         grep -E '^(torch|torchvision)==' requirements.txt > torch-requirements.txt \
         && pip install --index-url "$TORCH_INDEX_URL" -c constraints.txt -r torch-requirements.txt; \
       fi \
    && pip install -c constraints.txt -r requirements.txt
# The packages, with the bundled checkpoint model/weights/*.pt when there is one (package data).
COPY cli ./cli
COPY model ./model
COPY service ./service
COPY training ./training
RUN pip install --no-deps . \
    && python -c 'import cli, model, service, training; from model.weights import default_checkpoint_path; print("bundled checkpoint:", default_checkpoint_path())'

# ---------------------------------------------------------------------------------------------
# runtime: the venv, the training configs, an unprivileged user. No pip cache.
FROM python-base AS runtime
ARG VERSION=0.1.0
# Extra system packages. The CPU image wants "g++ python3-dev": with them, SCGAN_COMPILE=auto
# compiles the forward's CPU kernels at start-up (2.5-4.4x faster, benchmarks/results/); without
# them it stays eager, logged. The CUDA image needs none: compile 'auto' stays eager on CUDA.
ARG RUNTIME_APT_PACKAGES=""
# hadolint ignore=DL3008,SC2086
RUN if [ -n "$RUNTIME_APT_PACKAGES" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $RUNTIME_APT_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
LABEL org.opencontainers.image.title="scgan-colorize" \
      org.opencontainers.image.description="SCGAN saliency-guided colorization: REST service and training CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
# jemalloc, preloaded below: with glibc's malloc the service's RSS grew 14-20% over a 2,000-request
# soak (full-resolution image buffers fragment its arenas); with jemalloc 4.5% (benchmarks/results/load.md).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjemalloc2 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(find /usr/lib -name libjemalloc.so.2 -print -quit)" /usr/local/lib/libjemalloc.so.2 \
    && test -e /usr/local/lib/libjemalloc.so.2
RUN groupadd --system --gid 10001 scgan \
    && useradd --system --uid 10001 --gid scgan --home-dir /home/scgan --create-home --shell /usr/sbin/nologin scgan \
    && install -d -o scgan -g scgan /checkpoints /workspace /var/cache/scgan
COPY --from=builder /opt/venv /opt/venv
COPY configs /opt/scgan/configs
COPY docker/healthcheck.py /opt/scgan/healthcheck.py
# The bundled checkpoint's card and licence notes travel with it (MODEL_CARD.md, "Licences").
COPY MODEL_CARD.md LICENSE /opt/scgan/
# SCGAN_* are the service's settings (service/settings.py); everything else can be overridden
# the same way (docker run -e, compose .env, the Kubernetes ConfigMap).
#   device auto + precision auto: CUDA with fp16 when a GPU is visible, else CPU with bf16 (native
#   bf16 CPUs) or fp32.
#   SCGAN_CHECKPOINT unset: the bundled starter checkpoint; set it to a mounted file to override.
# Caches go to /tmp so the root filesystem can be mounted read-only; the compiled forwards go to
# the volume /var/cache/scgan (compose: a named volume; Kubernetes: an emptyDir), so that a restart
# loads them in seconds instead of compiling for minutes (docs/operations.md, "Start-up time").
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 \
    HOME=/home/scgan \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCHINDUCTOR_CACHE_DIR=/tmp/.cache/torchinductor \
    SCGAN_COMPILE_CACHE_DIR=/var/cache/scgan/compile \
    SCGAN_HOST=0.0.0.0 \
    SCGAN_PORT=8000 \
    SCGAN_DEVICE=auto \
    SCGAN_PRECISION=auto \
    SCGAN_LOG_FORMAT=json
VOLUME ["/var/cache/scgan"]
WORKDIR /workspace
USER 10001:10001
EXPOSE 8000
# Liveness only (the process and its event loop answer); readiness is /readyz, used by
# Kubernetes and by docker-compose.yml's healthcheck. The start period covers loading the model,
# the CUDA context and, on CPU, a cold start's compiling: about 6x the slowest one measured
# (98 s with 2 workers on a quiet 2-core machine, benchmarks/results/time_to_ready.md), for busier nodes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=660s --retries=3 \
    CMD ["python", "/opt/scgan/healthcheck.py"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# The same start command as `make serve`: the scgan-serve console script (service.__main__:main).
CMD ["scgan-serve"]
