# Imported before any test module: `ldm_dis` sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP
# (see ldm_dis/__init__.py and docs/benchmarks.md), so the suite does not stall on a busy machine.
import ldm_dis  # noqa: F401
