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
# Keep pip's build chatter out of the way; show it only if the install fails.
log=.venv/install.log
if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]" >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: installing the project failed (log above, also in $log)" >&2
    exit 1
fi
