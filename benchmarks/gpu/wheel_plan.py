"""Which carried wheels a machine needs: those whose top-level modules this Python cannot import.

    python benchmarks/gpu/wheel_plan.py benchmarks/gpu/wheels           # one wheel path per line, to install
    python benchmarks/gpu/wheel_plan.py --check benchmarks/gpu/wheels benchmarks/gpu/wheels.txt

``--check`` instead verifies the folder: exactly one wheel per project (two versions stop a ``pip
install``) and one for every requirement of the list. A wheel's modules are read from its
``top_level.txt``, or from the paths in its ``RECORD``; the wheel is never imported or run.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import zipfile
from pathlib import Path


def project_of(wheel: Path) -> str:
    """The normalized project name of a wheel file (``PyYAML-6.0.4-...whl`` -> ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()


def top_level_modules(wheel: Path) -> list[str]:
    """The importable top-level names a wheel installs."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        listed = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        if listed:
            text = archive.read(listed[0]).decode()
            return sorted({line.strip() for line in text.splitlines() if line.strip()})
    found = set()
    for name in names:
        first = name.split("/")[0]
        if first.endswith((".dist-info", ".data")) or first == "__pycache__":
            continue
        if "/" in name:
            found.add(first)
        elif first.endswith(".py"):
            found.add(first[:-3])
        elif first.endswith(".so") or ".cpython-" in first:
            found.add(first.split(".")[0])
    return sorted(found)


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def needed(folder: Path) -> list[Path]:
    """Wheels of ``folder`` with at least one top-level module that does not import here."""
    return [w for w in sorted(folder.glob("*.whl")) if not all(importable(m) for m in top_level_modules(w))]


def requirements(listing: Path) -> list[str]:
    """Normalized project names of a requirements file (``name==version  # comment`` lines)."""
    names = []
    for line in listing.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(re.sub(r"[-_.]+", "-", re.split(r"[=<>!~ ;\[]", line)[0]).lower())
    return names


def check(folder: Path, listing: Path) -> list[str]:
    """Problems of a wheels folder against its list (empty when it is complete and unambiguous)."""
    wheels = sorted(folder.glob("*.whl"))
    projects = [project_of(w) for w in wheels]
    problems = [f"two wheels of {p}: " + ", ".join(w.name for w in wheels if project_of(w) == p)
                for p in sorted(set(projects)) if projects.count(p) > 1]
    problems += [f"no wheel for {name} (in {listing.name})" for name in requirements(listing) if name not in projects]
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("listing", type=Path, nargs="?", help="with --check: the requirements file")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"wheel_plan: {args.folder} is not a folder (run benchmarks/gpu/fetch_wheels.sh first)", file=sys.stderr)
        return 2
    if args.check:
        problems = check(args.folder, args.listing)
        for problem in problems:
            print(f"wheel_plan: {problem}", file=sys.stderr)
        return 1 if problems else 0
    for wheel in needed(args.folder):
        print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
