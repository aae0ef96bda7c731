#!/usr/bin/env bash
# The GPU throughput rows in one command (the companion of run_proof.sh, minutes):
#
#     bash benchmarks/gpu/run_benchmarks.sh OUT_DIR
#
# Writes OUT_DIR/train_bench.md (LDM train step at the proof's size, batch 512, bf16, channels-last, fused
# AdamW: fixed batch and fed by 8 DataLoader workers; DDIM sampling; the VQ-GAN step; FLOPs per image),
# OUT_DIR/dyga_bench.md (anchor fitting of 20 units of 100k x 32 on the GPU, clusters and a blob) and
# OUT_DIR/benchmarks.log. BENCH_COMPILE=1 adds the train-step row under torch.compile (compiling takes
# minutes). Same environment variables as run_proof.sh (PYTHON, PROOF_WHEELS, PROOF_SITE, PROOF_REQUIRE_GPU).
set -euo pipefail
out=${1:?usage: run_benchmarks.sh OUT_DIR}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-python3}
wheels=${PROOF_WHEELS:-$repo/benchmarks/gpu/wheels}
work=$(mktemp -d "${TMPDIR:-/tmp}/ldm_dis_bench.XXXXXX")
site=${PROOF_SITE:-$work/site}
mkdir -p "$out" "$site"
out=$(cd "$out" && pwd)
exec > >(tee "$out/benchmarks.log") 2>&1
echo "== benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ), repo $repo"
source "$repo/benchmarks/gpu/env.sh"
device=$("$python" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
cd "$repo"

echo "== train_bench ($device)"
# BENCH_ARGS replaces the sizes (the tests' tiny CPU run); the defaults are the proof's
args=(${BENCH_ARGS:---sizes proof --batch 512 --ddim-batch 256 --ddim-steps 100 --repeats 5 --loader-workers 8 --first-stage --flops})
"$python" benchmarks/train_bench.py --device "$device" --bf16 --channels-last "${args[@]}" | tee "$out/train_bench.md"
if [ "${BENCH_COMPILE:-0}" = 1 ]; then
    "$python" benchmarks/train_bench.py --device "$device" --bf16 --channels-last --compile "${args[@]}" \
        | tee -a "$out/train_bench.md"
fi

echo "== dyga_bench ($device)"
dyga=(${DYGA_ARGS:---units 20 --sizes 100000 --repeats 2})
"$python" benchmarks/dyga_bench.py --device "$device" --fitters torch "${dyga[@]}" | tee "$out/dyga_bench.md"
echo "== done"
