# Sourced by run_proof.sh and run_benchmarks.sh: steps 1-3 of a run on the GPU machine.
# Expects: repo, python, wheels, site. Leaves PYTHONPATH set to the project and the target folder.
echo "== 1. carried wheels"
if [ -d "$wheels" ]; then
    mapfile -t todo < <("$python" "$repo/benchmarks/gpu/wheel_plan.py" "$wheels")
    if [ "${#todo[@]}" -gt 0 ]; then
        printf '   installing %s\n' "${todo[@]##*/}"
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${todo[@]}"
    else
        echo "   every carried package already imports here"
    fi
else
    echo "   no wheels folder at $wheels (run benchmarks/gpu/fetch_wheels.sh where there is network)"
fi

echo "== 2. the project from $repo, without dependencies"
export PYTHONPATH="$repo:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

echo "== 3. imports and device"
"$python" - <<'PY'
import importlib, os, sys
need = ["torch", "diffusers", "omegaconf", "accelerate", "h5py", "safetensors", "sklearn", "scipy", "matplotlib",
        "tqdm", "PIL", "numpy", "threadpoolctl", "ldm_dis"]
missing = []
for name in need:
    try:
        module = importlib.import_module(name)
        print(f"   {name} {getattr(module, '__version__', '')} ({os.path.dirname(getattr(module, '__file__', '') or '')})")
    except Exception as exc:  # any failure to import is reported, not only a missing module
        missing.append(f"{name}: {exc}")
if missing:
    sys.exit("cannot run the proof, these do not import:\n  " + "\n  ".join(missing))
import torch
print(f"   torch.cuda.is_available() = {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
if not torch.cuda.is_available() and os.environ.get("PROOF_REQUIRE_GPU", "1") != "0":
    sys.exit("no GPU: this is the GPU proof run (set PROOF_REQUIRE_GPU=0 to run it on a CPU anyway)")
PY

