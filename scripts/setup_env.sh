#!/usr/bin/env bash
# Create .venv and install ldm_dis (editable, with test extras) into it.
# Machines without an NVIDIA GPU get the CPU build of PyTorch through constraints/cpu.txt, so pip never
# downloads CUDA packages; machines with a GPU install PyTorch as pip resolves it (the CUDA build).
# Re-running is cheap: the install is skipped while pyproject.toml and the constraints are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi

constraints=()
if ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1); then
  constraints=(-c constraints/cpu.txt)
fi

stamp=.venv/.ldm_dis_installed
want=$(cat pyproject.toml constraints/cpu.txt | sha256sum | cut -d' ' -f1)-${#constraints[@]}
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing ldm_dis into .venv ${constraints[*]:+(CPU build of torch)}" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${constraints[@]}" -e ".[dev]"
  echo "$want" > "$stamp"
fi
