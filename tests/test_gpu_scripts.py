"""The GPU proof run's scripts (benchmarks/gpu/): they parse, the carried wheels cover what the project
imports beyond the lent machine's image, the install plan reads wheels correctly, and (slow) the whole
run_proof.sh works from a Python that has torch but neither diffusers nor omegaconf."""

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU))

import wheel_plan  # noqa: E402

# What the lent GPU machine's Python has (its image's package list): import names
ON_THE_MACHINE = {"torch", "numpy", "scipy", "sklearn", "matplotlib", "accelerate", "tqdm", "safetensors", "h5py",
                  "PIL", "threadpoolctl", "joblib", "yaml", "huggingface_hub", "filelock", "regex", "requests", "zipp"}
OPTIONAL = {"pacmap", "tensorboard"}  # imported only when installed (guarded imports)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_scripts_parse():
    for script in ("run_proof.sh", "run_benchmarks.sh", "env.sh", "fetch_wheels.sh"):
        subprocess.run(["bash", "-n", str(GPU / script)], check=True)


def test_carried_wheels_cover_what_the_machine_lacks():
    listed = set(wheel_plan.requirements(GPU / "wheels.txt"))
    third_party = set()
    for path in (ROOT / "ldm_dis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            third_party |= {n.split(".")[0] for n in names}
    third_party -= set(sys.stdlib_module_names) | {"ldm_dis"} | OPTIONAL
    lacking = third_party - ON_THE_MACHINE
    assert lacking == {"diffusers", "omegaconf"}
    assert lacking <= listed
    # and what those need, recursively, is on the machine or carried too (read from the installed metadata)
    machine = {_norm(p) for p in ON_THE_MACHINE} | {"scikit-learn", "pillow", "pyyaml", "huggingface-hub"}
    todo, seen = list(lacking), set()
    while todo:
        project = todo.pop()
        seen.add(project)
        for requirement in importlib.metadata.requires(project) or []:
            name = _norm(re.split(r"[=<>!~ ;\[(]", requirement)[0])
            if "extra ==" in requirement or name in machine:
                continue
            assert name in listed, f"{project} needs {name}: neither on the machine nor in wheels.txt"
            if name not in seen:
                todo.append(name)
    # the carried versions are the ones these tests run with
    pins = dict(line.split("#")[0].strip().split("==") for line in (GPU / "wheels.txt").read_text().splitlines()
                if "==" in line.split("#")[0])
    for project in ("diffusers", "omegaconf"):
        assert pins[project] == importlib.metadata.version(project), project


def _wheel(folder: Path, name: str, files: dict) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_install_plan_reads_wheels_without_running_them(tmp_path):
    _wheel(tmp_path, "numpy_like-1.0-py3-none-any.whl",  # its module (numpy) imports here
           {"numpy/__init__.py": "", "numpy_like-1.0.dist-info/RECORD": ""})
    absent = _wheel(tmp_path, "Not_Here-2.0-py3-none-any.whl",
                    {"not_here_pkg/__init__.py": "raise SystemExit('never imported')", "not_here_mod.py": "",
                     "Not_Here-2.0.dist-info/RECORD": ""})
    listed = _wheel(tmp_path, "PyYAML_Like-6.0-cp312-cp312-manylinux2014_x86_64.whl",
                    {"_yaml_like/__init__.py": "", "PyYAML_Like-6.0.dist-info/top_level.txt": "yaml_like_top\n"})
    assert wheel_plan.top_level_modules(absent) == ["not_here_mod", "not_here_pkg"]
    assert wheel_plan.top_level_modules(listed) == ["yaml_like_top"]  # top_level.txt wins over paths
    assert wheel_plan.project_of(listed) == "pyyaml-like"
    assert wheel_plan.needed(tmp_path) == [absent, listed]  # numpy imports here: not reinstalled
    listing = tmp_path / "wheels.txt"
    listing.write_text("numpy_like==1.0  # comment\nnot-here==2.0\nmissing_one==3\n")
    _wheel(tmp_path, "not_here-2.1-py3-none-any.whl", {"x.py": ""})
    problems = wheel_plan.check(tmp_path, listing)
    assert any("two wheels of not-here" in p for p in problems)
    assert any("no wheel for missing-one" in p for p in problems)


@pytest.mark.slow  # minutes: the proof's tiny run through the script, from a fresh Python environment
def test_run_proof_installs_the_wheels_and_runs_from_a_python_without_them(tmp_path):
    from test_proof_run import TINY

    wheels = GPU / "wheels"
    if not any(wheels.glob("diffusers-*.whl")):
        pytest.skip("no carried wheels: run benchmarks/gpu/fetch_wheels.sh first")
    # a Python like the lent machine's: the test environment's packages minus the carried ones
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    farm = tmp_path / "farm"
    farm.mkdir()
    lacking = ("diffusers", "omegaconf", "importlib_metadata", "lazy_importer", "ldm_dis", "__editable__")
    for entry in site.iterdir():
        if not entry.name.lower().startswith(lacking) and not entry.name.endswith(".pth"):
            (farm / entry.name).symlink_to(entry)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    venv_site = next((venv / "lib").glob("python*/site-packages"))
    (venv_site / "farm.pth").write_text(str(farm) + "\n")
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import diffusers"], capture_output=True, env={"PATH": os.environ["PATH"]})
    assert probe.returncode != 0  # the stand-in machine really lacks diffusers
    out = tmp_path / "out"
    env = {"PATH": os.environ["PATH"], "PYTHON": str(python), "PROOF_REQUIRE_GPU": "0", "TMPDIR": str(tmp_path),
           "OMP_NUM_THREADS": "1"}
    subprocess.run(["bash", str(GPU / "run_proof.sh"), str(out), *TINY, "--images", "1", "--nmi-images", "24"],
                   check=True, env=env, cwd=tmp_path)
    report = json.loads((out / "proof.json").read_text())
    assert report["training"]["ldm"]["steps"] >= 1 and report["command_seconds"] >= report["setup_seconds"] >= 0
    assert set(report["metrics"]) == {"factorvae", "dci", "mig", "infomec"}
    log = (out / "proof.log").read_text()
    assert "installing diffusers-" in log and f"{tmp_path}" in log  # installed into the target folder
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["proof.json", "proof.log", "dataset.png", "interchange.png", "attention.png", "scatter.png", "loss_curves.png"])
