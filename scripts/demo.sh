#!/usr/bin/env bash
# Set up, record the built-in demo workload for 5 seconds, show the heaviest functions, and
# export a speedscope profile (open demo.speedscope.json at https://www.speedscope.app).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh analyze
.venv/bin/spyrec -o demo.spy -r 200 -- .venv/bin/python -m spyrec.demo 5
.venv/bin/spyanalyze info demo.spy
.venv/bin/spyanalyze top demo.spy
.venv/bin/spyanalyze export demo.spy --format speedscope -o demo.speedscope.json
.venv/bin/spyanalyze export demo.spy --format collapsed -o demo.collapsed
echo "wrote demo.spy, demo.speedscope.json and demo.collapsed"
