#!/usr/bin/env bash
# Set up and run the whole test suite: every CPython found on the machine is a real target.
# CPython 3.14/3.15 run in a Debian sid root (their glibc is newer than this machine's): as root,
# this builds it once (a minute or two; kept in /var/cache/spyrec); where it cannot be built, the
# tests that need it skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
if [ "$(id -u)" = 0 ] && [ -z "${SPYREC_NO_SID_ROOT:-}" ]; then
    if ! timeout 600 scripts/make-sid-root.sh >/dev/null; then
        echo "test: no sid root (scripts/make-sid-root.sh failed): the 3.14/3.15 tests will skip" >&2
    fi
fi
# The flame-graph page tests open it in Debian's headless Chromium, and the native line tests
# read the C library's lines from its separate debug file (libc6-dbg); as root, install them once.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    wanted=()
    command -v chromium >/dev/null || wanted+=(chromium)
    dpkg -s libc6-dbg >/dev/null 2>&1 || wanted+=(libc6-dbg)
    if [ ${#wanted[@]} -gt 0 ] && ! { timeout 300 apt-get install -y -q "${wanted[@]}" >/dev/null 2>&1 \
           || { timeout 120 apt-get update -q >/dev/null 2>&1 && timeout 300 apt-get install -y -q "${wanted[@]}" >/dev/null 2>&1; }; }; then
        echo "test: ${wanted[*]} could not be installed: the flame-graph page tests or the C library's native lines will skip" >&2
    fi
fi
# lint first (a second): pyflakes' and pycodestyle's rules, as pyproject.toml configures them
.venv/bin/ruff check --quiet . || { echo "test: ruff found the problems above" >&2; exit 1; }
if [ $# -gt 0 ]; then  # the tests named, one at a time
    .venv/bin/mypy --no-error-summary || { echo "test: mypy found the problems above" >&2; exit 1; }
    exec .venv/bin/python -m pytest "$@"
fi
# The type check (seconds, cached in .mypy_cache: the files pyproject.toml's [tool.mypy] names)
# beside the tests that time nothing, two at a time (pytest-xdist); then, one at a time, the
# tests of live targets, whose timings a busy machine would skew.  The slowest are listed at the
# end: the suite must stay well under 15 minutes.
typing_log=$(mktemp)
trap 'rm -f "$typing_log"' EXIT
.venv/bin/mypy --no-error-summary >"$typing_log" 2>&1 &
typing=$!
untimed=0
.venv/bin/python -m pytest -q -n 2 -m untimed || untimed=$?
if ! wait "$typing"; then
    cat "$typing_log" >&2
    echo "test: mypy found the problems above" >&2
    exit 1
fi
[ "$untimed" = 0 ] || { echo "test: the untimed tests failed (above)" >&2; exit 1; }
.venv/bin/python -m pytest --durations=25 -m "not untimed"
