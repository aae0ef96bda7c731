#!/usr/bin/env bash
# README's first command: create .venv, install, then run the main job on the embedded default
# (synth-shapes3d at 32x32 on the CPU). Extra arguments go to `ldm-dis quickstart` (e.g. train.max_steps=500).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/ldm-dis quickstart "$@"
