# vgloss container image: the REST server (default), the queue worker and the describe job.
#
#   docker build -t vgloss:cpu .                                   # CPU torch wheels
#   docker build -t vgloss:cuda --build-arg VARIANT=cuda .         # CUDA torch wheels (PyPI)
#
# BASE_IMAGE may be an image with Python 3.10+ (python:3.11-slim, the default) or a bare
# Debian/Ubuntu image (e.g. a debootstrapped bookworm, nvidia/cuda:*-runtime-ubuntu*), in which
# case python3 + python3-venv come from apt. See docker/README.md for the exact commands.
ARG BASE_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------------------------
# base: Python, CA certificates and WordNet 3.0 (Debian packages -> /usr/share/wordnet).
# --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN set -eux; \
    pkgs="ca-certificates wordnet-base wordnet-sense-index"; \
    if ! { command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; }; then \
        pkgs="$pkgs python3 python3-venv"; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    python3 --version; \
    test -d /usr/share/wordnet

# --------------------------------------------------------------------------------------------
# builder: a virtual environment at /opt/venv with torch, the dependencies and the package.
# --------------------------------------------------------------------------------------------
FROM base AS builder
# cpu: torch/torchvision from TORCH_INDEX_URL (default https://download.pytorch.org/whl/cpu)
# cuda: torch/torchvision from PyPI (CUDA wheels, CUDA runtime libraries as pip packages)
ARG VARIANT=cpu
ARG TORCH_SPEC="torch torchvision"
# an extra index for the torch wheels; empty = the VARIANT's default, "none" = no extra index
ARG TORCH_INDEX_URL=""
# ordinary pip options, empty unless given (e.g. a CA bundle, a local wheel mirror)
ARG PIP_CERT=""
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_FIND_LINKS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first: the biggest layer, and it changes least often.
RUN set -eu; \
    for v in PIP_CERT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do \
        eval "val=\${$v:-}"; [ -n "$val" ] || unset "$v"; \
    done; \
    case "$VARIANT" in \
        cpu) idx="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
        cuda) idx="${TORCH_INDEX_URL:-}" ;; \
        *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;; \
    esac; \
    if [ "$idx" = none ]; then idx=""; fi; \
    if [ -n "$idx" ]; then export PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL:-} $idx"; fi; \
    set -x; \
    pip install --upgrade pip; \
    pip install $TORCH_SPEC; \
    python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)"; \
    pip freeze | grep -iE '^(torch|torchvision)==' > /opt/venv/torch-constraints.txt; \
    cat /opt/venv/torch-constraints.txt

# then the declared dependencies (cached while only the source changes) ...
WORKDIR /src
COPY pyproject.toml ./
RUN set -eu; \
    for v in PIP_CERT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do \
        eval "val=\${$v:-}"; [ -n "$val" ] || unset "$v"; \
    done; \
    python -c "import importlib, importlib.util as u; t = importlib.import_module('tomllib' if u.find_spec('tomllib') else 'pip._vendor.tomli'); print('\n'.join(t.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt; \
    set -x; \
    pip install -r /tmp/requirements.txt -c /opt/venv/torch-constraints.txt

# ... then the package itself.
COPY . .
RUN set -eu; \
    for v in PIP_CERT PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do \
        eval "val=\${$v:-}"; [ -n "$val" ] || unset "$v"; \
    done; \
    set -x; \
    pip install --no-deps . ; \
    pip check || true; \
    vgloss serve --help >/dev/null

# --------------------------------------------------------------------------------------------
# runtime: the venv, WordNet laid out as an NLTK data root, a non-root user, volumes.
# --------------------------------------------------------------------------------------------
FROM base AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="vgloss" \
      org.opencontainers.image.description="Zero-shot image classification with V-GLOSS visual descriptions, CLIP and a REST server" \
      org.opencontainers.image.licenses="MIT" \
      io.vgloss.variant="${VARIANT}"

COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# NLTK data root (corpora/wordnet + lexnames) built from the Debian WordNet 3.0 files;
# /usr/share/nltk_data is on NLTK's default search path.
RUN python -m gloss_gen.data.wordnet --setup /usr/share/nltk_data

RUN set -eux; \
    groupadd --system --gid 10001 vgloss; \
    useradd --system --uid 10001 --gid 10001 --home-dir /home/vgloss --create-home \
        --shell /usr/sbin/nologin vgloss; \
    mkdir -p /data /cache/huggingface /cache/open_clip; \
    chown -R 10001:10001 /data /cache

# Model weights (open_clip / huggingface_hub) and the embedded store live on volumes.
ENV VGLOSS_DATA_DIR=/data \
    VGLOSS_CACHE_DIR=/cache/open_clip \
    VGLOSS_NLTK_DATA=/usr/share/nltk_data \
    HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache \
    VGLOSS_DEVICE=auto
VOLUME ["/data", "/cache"]

USER 10001:10001
WORKDIR /home/vgloss
EXPOSE 8000

# /readyz answers 503 until the model and the default classifier are loaded; the first start
# may download weights and embed the default class set, hence the long start period.
# Serving on another port? Set HEALTHCHECK_URL=http://127.0.0.1:PORT/readyz as well.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL') or 'http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["vgloss", "serve", "--host", "0.0.0.0", "--port", "8000"]
