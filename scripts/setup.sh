#!/usr/bin/env bash
# Create .venv (if missing) and install the project into it with the given extras.
# Usage: scripts/setup.sh EXTRAS   (e.g. "analyze" or "test")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-analyze}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
