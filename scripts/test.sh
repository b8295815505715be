#!/usr/bin/env bash
# Sets the machine up (scripts/install.sh) and runs lint, type checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh appliance,driver,cloud,dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest -q "$@"
