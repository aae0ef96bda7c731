# Imported before any test module: `ldm_dis` sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP
# (see ldm_dis/__init__.py and docs/benchmarks.md), so the suite does not stall on a busy machine.
import os
import tempfile

import pytest

import ldm_dis  # noqa: F401

# The first-stage cache of the test session lives in a temporary folder, never in the user's
# ~/.cache: set at import, before any test (or subprocess a test starts) can build a first stage.
_CACHE = tempfile.TemporaryDirectory(prefix="ldm_dis_test_cache_")
os.environ["LDM_DIS_CACHE"] = _CACHE.name


@pytest.fixture(scope="session", autouse=True)
def _user_cache_folder():
    """The session's cache folder (``LDM_DIS_CACHE``), removed when the session ends."""
    yield _CACHE.name
    _CACHE.cleanup()
