#!/usr/bin/env bash
# The test suite (README's second command; .ci/run calls this). Slow checks: add `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
