import pytest

from ldm_dis.config.loading import load_config
from tiny_training_task import TINY_OVERRIDES, TinyDataset, register


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """(cfg_factory, dataset): configs for the tiny task with run.dir under tmp_path."""
    register(monkeypatch)
    monkeypatch.setenv("LDM_DIS_CACHE", str(tmp_path / "cache"))  # each test its own first-stage cache

    def make(*overrides, run="run"):
        return load_config(None, [*TINY_OVERRIDES, f"run.dir={tmp_path / run}", *overrides])

    return make, TinyDataset()
