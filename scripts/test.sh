#!/usr/bin/env bash
# Set up and run the whole test suite (every installed CPython is a real target).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"
