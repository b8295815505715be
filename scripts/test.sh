#!/usr/bin/env bash
# Sets the machine up (scripts/install.sh) and runs lint, type checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh appliance,driver,cloud,dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The tflite_runtime fallback (DESIGN §2) in its own venv: tflite-runtime 2.14 needs
# numpy<2 and Python <= 3.11. Created once; the check itself takes ~2 s.
if [ ! -x .venv-tflite/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv-tflite
    .venv-tflite/bin/python -m pip install -q tflite-runtime==2.14.0 'numpy<2'
fi
.venv/bin/python -m pitbox_appliance.models.runtime_check >.venv-tflite/litert-outputs.json
PYTHONPATH=. .venv-tflite/bin/python -m pitbox_appliance.models.runtime_check \
    --runtime tflite_runtime.interpreter --compare .venv-tflite/litert-outputs.json
# The slowest tests, so the log shows where the run's time goes.
.venv/bin/pytest -q --durations=30 "$@"
