"""The metric registry and ``evaluate``: run named metrics with one seed, standard or fast sizes.

A source is a dataset with a representation function, or a :class:`CodeTable` (exported codes) with
``representation_fn=None``; a full table of a model's codes gives the numbers the model itself gives.
Vector units are reduced per unit by PCA (``unit_pca``): "sample" fits it on each metric's evaluation
sample (the paper and prior work); "all" fits it once on the codes of the whole dataset, as the released
code's evaluation did (a dataset source is then encoded in full first).
"""

from __future__ import annotations

import difflib
import inspect
import time
import zlib
from typing import Callable, Optional, Sequence

import numpy as np

from ldm_dis.errors import UserInputError
from ldm_dis.metrics.code_table import CodeTable
from ldm_dis.metrics.dci import dci_metric
from ldm_dis.metrics.downstream import downstream_metric
from ldm_dis.metrics.factorvae import factorvae_metric
from ldm_dis.metrics.fid import fid_metric
from ldm_dis.metrics.infomec import infomec_metric
from ldm_dis.metrics.mig import mig_metric
from ldm_dis.metrics.modularity import modularity_metric
from ldm_dis.metrics.sap import sap_metric
from ldm_dis.metrics.skipped import MetricSkipped
from ldm_dis.metrics.tad import tad_metric
from ldm_dis.registry import lookup

# name (as in eval.metrics of the config) -> sampling wrapper (dataset, representation_fn, rng, **protocol)
METRICS: dict[str, Callable[..., dict]] = {
    "factorvae": factorvae_metric,
    "dci": dci_metric,
    "mig": mig_metric,
    "sap": sap_metric,
    "modularity": modularity_metric,
    "infomec": infomec_metric,
    "tad": tad_metric,
    "downstream": downstream_metric,
    "fid": fid_metric,
}

# smaller samples for quick looks; the wrappers' defaults are the published protocol sizes
FAST_PROTOCOL: dict[str, dict] = {
    "factorvae": {"num_variance_estimate": 2_000, "num_train": 1_000, "num_eval": 500},
    "dci": {"num_train": 2_000, "num_test": 1_000},
    "mig": {"num_train": 2_000},
    "sap": {"num_train": 2_000, "num_test": 1_000},
    "modularity": {"num_train": 2_000, "num_test": 1_000},
    "infomec": {"num_points": 2_000},
    "tad": {"num_points": 2_000},
    "downstream": {"train_sizes": (100, 500, 2_000), "num_test": 1_000},
    "fid": {"num_points": 1_000},
}


UNIT_PCA = ("sample", "all")


def metric_rng(seed: int, name: str) -> np.random.Generator:
    """Each metric's own stream: its numbers do not depend on which other metrics run."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def check_names(names: Sequence[str]) -> list[str]:
    """Validate metric names; an unknown one fails with the nearest valid name."""
    for name in names:
        lookup(METRICS, "metric", name)
    return list(names)


def check_protocol(protocol: dict[str, dict]) -> dict[str, dict]:
    """Every override must name a metric and one of its keyword parameters."""
    check_names(list(protocol))
    for name, params in protocol.items():
        allowed = [p for p in inspect.signature(METRICS[name]).parameters if p not in ("dataset", "representation_fn", "rng")]
        for key in params:
            if key not in allowed:
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise UserInputError(f"{name} has no protocol value {key!r}{hint} Valid: {', '.join(allowed)}")
    return protocol


def evaluate(
    dataset,
    representation_fn,
    names: Sequence[str],
    seed: int,
    fast: bool = False,
    n_jobs: Optional[int] = -1,
    protocol: Optional[dict[str, dict]] = None,
    unit_pca: str = "sample",
) -> dict:
    """Run the named metrics.

    protocol: per-metric keyword overrides on top of the preset (e.g. {"fid": {"weights": path}}).
    unit_pca: "sample" or "all" (see the module docstring).
    Returns {"preset": "fast" | "standard", "seed", "unit_pca", "scores": {name: {key: float}},
    "matrices": {name: {key: nested list}} (importance, NMI, ... for heatmaps),
    "skipped": {name: reason}, "seconds": {name: wall time}}.
    """
    if unit_pca not in UNIT_PCA:
        raise UserInputError(f"unit_pca={unit_pca!r} is unknown; expected one of {list(UNIT_PCA)}")
    result = {"preset": "fast" if fast else "standard", "seed": int(seed), "unit_pca": unit_pca,
              "scores": {}, "matrices": {}, "skipped": {}, "seconds": {}}
    protocol = check_protocol(protocol or {})
    names = check_names(names)
    images = (dataset, representation_fn)  # FID scores images, whatever the codes
    codes = images
    if unit_pca == "all" and any(name != "fid" for name in names):
        table = dataset if representation_fn is None else CodeTable.from_source(dataset, representation_fn)
        codes = (table.reduced(), None)
    for name in names:
        fn = METRICS[name]
        source, source_fn = images if name == "fid" else codes
        kwargs = dict(FAST_PROTOCOL[name]) if fast else {}
        if "n_jobs" in inspect.signature(fn).parameters:
            kwargs["n_jobs"] = n_jobs
        kwargs.update(protocol.get(name, {}))
        start = time.perf_counter()
        try:
            out = fn(source, source_fn, metric_rng(seed, name), **kwargs)
        except MetricSkipped as exc:
            result["skipped"][name] = str(exc)
            continue
        result["seconds"][name] = round(time.perf_counter() - start, 3)
        result["scores"][name] = {k: float(v) for k, v in out.items() if np.ndim(v) == 0}
        arrays = {k: np.asarray(v).tolist() for k, v in out.items() if np.ndim(v) > 0}
        if arrays:
            result["matrices"][name] = arrays
    return result
