#!/usr/bin/env bash
# Installs everything vgloss needs into the current Python environment (activate a venv first
# if you want one): WordNet 3.0, the pinned PyTorch, the package with its test extras, the NLTK
# layout of WordNet, and headless Chromium + chromedriver for the web-page test. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

wordnet_ready() { [ -f /usr/share/wordnet/data.noun ] && [ -f /usr/share/wordnet/index.sense ]; }

if ! wordnet_ready; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    echo "installing WordNet 3.0 (Debian packages wordnet-base, wordnet-sense-index)"
    $SUDO apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null; } \
      || echo "warning: could not install WordNet with apt-get; falling back to nltk.download below"
  fi
fi

if ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    echo "installing headless Chromium for the web-page test (Debian packages chromium, chromium-driver)"
    $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "warning: could not install chromium with apt-get; tests/app/test_web_page.py will skip (fail in CI)"
  fi
fi

TORCH=("torch==2.14.1" "torchvision==0.29.1")
if "$PYTHON" -c "import torch, torchvision" 2>/dev/null; then
  :  # already installed (whichever build): keep it
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q "${TORCH[@]}"
else
  # No GPU: the CPU-only build is about a fifth of the download and has no CUDA libraries.
  "$PYTHON" -m pip install -q --timeout 15 --retries 1 "${TORCH[@]}" --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || { echo "the CPU-only torch index is unreachable; installing the default torch build instead (it works on a CPU, with CUDA libraries you will not use)"; \
         "$PYTHON" -m pip install -q "${TORCH[@]}"; }
fi
"$PYTHON" -m pip install -q -e ".[dev]"

NLTK_ROOT=${VGLOSS_NLTK_DATA:-$HOME/nltk_data}
if wordnet_ready; then
  "$PYTHON" -m gloss_gen.data.wordnet --setup "$NLTK_ROOT" >/dev/null
else
  "$PYTHON" -m nltk.downloader -q -d "$NLTK_ROOT" wordnet
fi
"$PYTHON" -c "from gloss_gen.data.wordnet import get_synset; assert get_synset('n01440764').name() == 'tench.n.01'"
echo "vgloss installed: $(command -v vgloss || echo "$PYTHON -m gloss_gen.cli")"
