#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu/wheels.txt for the GPU machine (CPython 3.12, manylinux x86_64)
# into benchmarks/gpu/wheels/ (ignored by git; carried by the device tool: carry ["benchmarks/gpu/wheels"]).
#
#     bash benchmarks/gpu/fetch_wheels.sh [PYTHON]        # PYTHON: any interpreter with pip (default python3)
#
# Needs the package index (PyPI); run it where there is network, before the GPU run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${1:-python3}
dest=$here/wheels
mkdir -p "$dest"
# binary wheels only, for the target machine, whatever this machine is
"$python" -m pip download --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" -r "$here/wheels.txt"
# the plan check: one version per project, every listed requirement present
"$python" "$here/wheel_plan.py" --check "$dest" "$here/wheels.txt"
du -sh "$dest"
