#!/usr/bin/env bash
# The first of vgloss's two set-up commands: install what is missing, then serve on the embedded
# defaults (a directory store, WordNet descriptions for the default class set, no Redis, no LLM key).
#
#   ./scripts/serve.sh [--offline] [vgloss serve options, e.g. --port 8000]
#
# Without internet the CLIP weights cannot be downloaded: the script says so in one line and stops,
# unless --offline asks for random weights (VGLOSS_PRETRAINED=none: the server runs, the scores mean
# nothing; enough to check an installation or try the API).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

offline=0
args=()
for arg in "$@"; do
  case "$arg" in
    --offline) offline=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done

if ! "$PYTHON" -c "import torch, open_clip, gloss_gen.cli; from gloss_gen.data.wordnet import get_synset; get_synset('n01440764')" >/dev/null 2>&1; then
  echo "vgloss: installing what is missing (scripts/install.sh; a few minutes the first time)"
  bash scripts/install.sh
fi

if [ "$offline" = 1 ]; then
  export VGLOSS_PRETRAINED=none
fi
# `vgloss serve` checks the weights before it starts (one line and exit 2 when they cannot be had).
exec "$PYTHON" -m gloss_gen.cli serve "${args[@]}"
