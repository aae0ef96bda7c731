"""Run independent metric jobs (one classifier per factor, per code) on several CPU cores.

Each job gets all it needs as arguments (data and its own integer seed), so the result does not
depend on which process or thread runs it or in what order: the parallel result equals the serial one.
``run_jobs`` uses worker processes (for Python-heavy jobs), or threads (``threads=True``) for jobs whose
time is spent in code that releases the GIL (liblinear, sklearn's tree builder), where handing the data
to another process would cost more than the job.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence

from joblib import Parallel, delayed


def resolve_jobs(n_jobs: Optional[int]) -> int:
    """None or -1 means every core this process may use."""
    if n_jobs is None or n_jobs < 0:
        try:
            return max(len(os.sched_getaffinity(0)), 1)
        except AttributeError:  # macOS has no sched_getaffinity
            return max(os.cpu_count() or 1, 1)
    return max(int(n_jobs), 1)


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    n_jobs: Optional[int] = -1,
    costs: Optional[Sequence[float]] = None,
    threads: bool = False,
) -> list:
    """Return ``[fn(*job) for job in jobs]``, computed in ``n_jobs`` worker processes, or threads of this
    process with ``threads=True``.

    costs: optional relative cost of each job; the costliest start first (longest-processing-time
    scheduling), so two cores finish together instead of one waiting on the 15-class factor.
    """
    workers = min(resolve_jobs(n_jobs), len(jobs))
    if workers <= 1:
        return [fn(*job) for job in jobs]
    order = list(range(len(jobs)))
    if costs is not None:
        order.sort(key=lambda i: -costs[i])
    if threads:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda i: fn(*jobs[i]), order))
    else:
        results = Parallel(n_jobs=workers, backend="loky", batch_size=1, pre_dispatch="all")(
            delayed(fn)(*jobs[i]) for i in order
        )
    out: list = [None] * len(jobs)
    for i, result in zip(order, results):
        out[i] = result
    return out
