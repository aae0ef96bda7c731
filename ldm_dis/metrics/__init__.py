"""Disentanglement metrics, each at two levels.

Array level, on precomputed codes (n, d) and factor indices (n, F):
``dci``, ``mig``, ``sap``, ``modularity_explicitness``, ``infomec``, ``tad``, ``downstream``,
``factorvae`` (batches drawn from the rows), ``fid_from_features``.
Sampling level, ``(dataset, representation_fn, rng, **protocol) -> dict`` with the published sizes
as defaults: ``METRICS[name]``. ``evaluate`` runs several by name with one seed.
"""

from ldm_dis.metrics.code_table import CodeTable
from ldm_dis.metrics.dci import dci
from ldm_dis.metrics.downstream import downstream
from ldm_dis.metrics.factorvae import factorvae, factorvae_from_batches
from ldm_dis.metrics.fid import fid_from_features, frechet_distance
from ldm_dis.metrics.infomec import infomec
from ldm_dis.metrics.mig import mig
from ldm_dis.metrics.modularity import modularity_explicitness
from ldm_dis.metrics.sap import sap
from ldm_dis.metrics.skipped import MetricSkipped
from ldm_dis.metrics.suite import FAST_PROTOCOL, METRICS, evaluate
from ldm_dis.metrics.tad import tad
from ldm_dis.metrics.units import UnitPCA

__all__ = [
    "CodeTable", "FAST_PROTOCOL", "METRICS", "MetricSkipped", "UnitPCA", "dci", "downstream", "evaluate",
    "factorvae", "factorvae_from_batches", "fid_from_features", "frechet_distance", "infomec", "mig",
    "modularity_explicitness", "sap", "tad",
]
