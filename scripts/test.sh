#!/usr/bin/env bash
# The second of vgloss's two set-up commands: install what is missing, make sure Redis answers on
# 127.0.0.1:6379 (the tests use a real one), check the layers contract, run the test suite.
#
#   ./scripts/test.sh [pytest options, e.g. -x tests/test_cli.py]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v redis-cli >/dev/null 2>&1 || ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q redis-server >/dev/null; } \
      || echo "could not install redis-server: the Redis tests will skip (and fail in CI)"
  fi
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /tmp/vgloss-test-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/vgloss-test-redis >/dev/null
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
fi

bash scripts/install.sh  # safe to re-run: installs only what is missing
if [ "${CI:-}" = true ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  echo "CI needs chromium and chromium-driver for the web-page test (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
lint-imports  # folders are layers: the contract in pyproject.toml
exec "$PYTHON" -m pytest -q -ra "$@"
