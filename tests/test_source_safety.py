"""The package never runs code read from a file: no unpickling, no unsafe YAML, no eval/exec.

Checked on the syntax tree (not by regex), so ``model.eval()`` or a comment mentioning pickle is fine."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "ldm_dis").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "scripts").rglob("*.py"),
                  ROOT / "train.py"])
UNPICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all", "Loader", "UnsafeLoader"}


def _dotted(node: ast.AST) -> str:
    """``torch.load`` -> "torch.load"; anything that is not a chain of names -> ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def problems(source: str, name: str = "<test>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNPICKLING_MODULES:
                found.append(f"{where}: from {node.module} import ...")
            if node.module == "yaml" and any(a.name in UNSAFE_YAML for a in node.names):
                found.append(f"{where}: from yaml import an unsafe loader")
            if node.module == "torch" and any(a.name == "load" for a in node.names):
                found.append(f"{where}: from torch import load (call torch.load(..., weights_only=True))")
        elif isinstance(node, ast.Attribute) and _dotted(node.value) == "yaml" and node.attr in UNSAFE_YAML:
            found.append(f"{where}: yaml.{node.attr}")
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if func in ("eval", "exec", "compile", "__import__"):
                found.append(f"{where}: builtin {func}()")
            if "allow_pickle" in keywords and not _is_constant(keywords["allow_pickle"], False):
                found.append(f"{where}: {func}(allow_pickle=...) other than False")
            if func == "torch.load" and not _is_constant(keywords.get("weights_only"), True):
                found.append(f"{where}: torch.load without weights_only=True")
            if func.split(".")[-1] in ("read_pickle", "load") and func.split(".")[0] in ("joblib", "pd", "pandas"):
                found.append(f"{where}: {func}() unpickles")
    return found


def test_the_checker_finds_each_unsafe_form():
    bad = """
import pickle
from dill import loads
import yaml
np.load(f, allow_pickle=True)
np.load(f, allow_pickle=flag)
torch.load(f)
torch.load(f, weights_only=False)
yaml.load(text)
yaml.unsafe_load(text)
eval("1")
exec("x = 1")
joblib.load(f)
from torch import load
"""
    assert len(problems(bad)) == 12, problems(bad)
    good = """
model.eval()
np.load(f)
np.load(f, allow_pickle=False)
torch.load(f, map_location="cpu", weights_only=True)
yaml.safe_load(text)
torch.compile(model)
# pickle.load in a comment
"""
    assert problems(good) == []


def test_package_source_has_no_way_to_run_code_from_a_file():
    assert len(SOURCES) > 50
    found = [p for path in SOURCES for p in problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []
