"""The package works installed, not only cloned: the wheel carries the configs, found by name from anywhere."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_config_and_the_license(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("ldm_dis-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ldm_dis" / "configs").rglob("*.yaml")}
    assert shipped and {"ldm_dis/configs/quickstart.yaml", "ldm_dis/configs/baselines/cpu_betavae.yaml"} <= shipped
    assert shipped <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)


def test_configs_are_found_by_name_inside_the_package_and_through_the_link():
    from ldm_dis.config.loading import CONFIG_DIR, resolve_config_path

    assert CONFIG_DIR == ROOT / "ldm_dis" / "configs"
    assert resolve_config_path("quickstart.yaml") == CONFIG_DIR / "quickstart.yaml"
    assert (ROOT / "configs").resolve() == CONFIG_DIR  # a clone keeps configs/ at the top
