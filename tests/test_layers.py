"""The pictures and the model never depend on the training code: no module under ldm_dis/sampling/,
ldm_dis/viz/ or ldm_dis/models/ imports ldm_dis.training (at the top or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ldm_dis"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", ["sampling", "viz", "models"])
def test_no_training_imports(folder):
    offenders = {str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p) if m.startswith("ldm_dis.training"))
                 for p in sorted((PACKAGE / folder).rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ldm_dis.training.checkpoint import load_checkpoint\n")
    assert imported_modules(probe) == {"ldm_dis.training.checkpoint"}
