#!/usr/bin/env bash
# The GPU proof run in one command, on a machine with torch but without network or this project:
#
#     bash benchmarks/gpu/run_proof.sh OUT_DIR [KEY=VALUE | quickstart flag ...]
#
# 1. installs the carried wheels (benchmarks/gpu/wheels/, see fetch_wheels.sh) whose modules do not
#    import here, into a target folder, without dependencies: the machine's torch is never touched;
# 2. puts the project (this working tree) on PYTHONPATH, without installing its dependencies;
# 3. checks that everything the run needs imports, and that a GPU is there;
# 4. runs `ldm-dis quickstart --config proof_gpu.yaml` and writes into OUT_DIR: proof.json (images/s,
#    steps and images of both trainings, peak GPU memory, the metrics; the run's summary.json), proof.log
#    (everything printed), and the pictures. The run folder itself (checkpoints) stays outside OUT_DIR.
#
# Environment: PYTHON (default python3), PROOF_CONFIG (default proof_gpu.yaml), PROOF_WHEELS,
# PROOF_SITE (the target folder, default a temporary one), PROOF_RUN_DIR (default a temporary one),
# PROOF_REQUIRE_GPU=0 to allow a CPU (the tests' tiny runs). Extra arguments go to the quickstart.
set -euo pipefail
out=${1:?usage: run_proof.sh OUT_DIR [KEY=VALUE ...]}
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-python3}
wheels=${PROOF_WHEELS:-$repo/benchmarks/gpu/wheels}
work=$(mktemp -d "${TMPDIR:-/tmp}/ldm_dis_proof.XXXXXX")
site=${PROOF_SITE:-$work/site}
run_dir=${PROOF_RUN_DIR:-$work/run}
mkdir -p "$out" "$site"
out=$(cd "$out" && pwd)
exec > >(tee "$out/proof.log") 2>&1
started=$(date +%s)
echo "== proof run: $(date -u +%Y-%m-%dT%H:%M:%SZ), repo $repo, python $("$python" -c 'import sys; print(sys.version.split()[0])')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# steps 1-3, shared with run_benchmarks.sh
source "$repo/benchmarks/gpu/env.sh"

echo "== 4. ldm-dis quickstart --config ${PROOF_CONFIG:-proof_gpu.yaml} run.dir=$run_dir $*"
setup_done=$(date +%s)
"$python" -m ldm_dis.cli quickstart --config "${PROOF_CONFIG:-proof_gpu.yaml}" "run.dir=$run_dir" "$@"

# the run's summary.json, with the whole command's seconds (set-up included) added
"$python" - "$run_dir/summary.json" "$out/proof.json" "$started" "$setup_done" "$(date +%s)" <<'PY'
import json, sys
source, target, started, setup_done, ended = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
report = json.load(open(source))
report["command_seconds"] = ended - started
report["setup_seconds"] = setup_done - started
json.dump(report, open(target, "w"), indent=2)
PY
for picture in dataset interchange attention scatter loss_curves; do
    [ -f "$run_dir/pictures/$picture.png" ] && cp "$run_dir/pictures/$picture.png" "$out/"
done
echo "== done in $(( $(date +%s) - started )) s (set-up included); results in $out, run folder $run_dir"
