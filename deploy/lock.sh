#!/usr/bin/env bash
# Regenerate requirements.lock: the runtime dependencies of pyproject.toml, pinned with hashes,
# resolved on PyPI for Python 3.11 on Linux (the Docker image: python:3.11-slim-bookworm).
#
#   deploy/lock.sh                    # after changing [project] dependencies in pyproject.toml
#   deploy/lock.sh --upgrade-package aiohttp    # move one pin (e.g. to a fixed release)
#   deploy/lock.sh --upgrade          # move every pin to the newest allowed release
#
# Without --upgrade*, pins that still satisfy pyproject.toml are kept. Needs pip-tools (dev deps).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${VENV:-.venv}/bin"
if ! "$BIN/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "deploy/lock.sh: run it with Python 3.11 (the image's Python), so markers resolve alike" >&2
  exit 2
fi

# PyPI alone: no local wheel folders or extra indexes from this machine's pip configuration may
# end up in (or change) the lock. --allow-unsafe pins setuptools too: --require-hashes installs
# nothing unpinned.
PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="deploy/lock.sh" "$BIN/pip-compile" \
  --quiet \
  --generate-hashes \
  --allow-unsafe \
  --strip-extras \
  --no-emit-index-url \
  --no-emit-find-links \
  --index-url https://pypi.org/simple \
  --output-file requirements.lock \
  "$@" \
  pyproject.toml
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages"
