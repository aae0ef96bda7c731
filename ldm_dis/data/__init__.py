"""Ground-truth datasets, chosen by ``data.name``.

    dataset = build_dataset(cfg.data)          # a GroundTruthDataset
    image, factors = dataset[0]                # (C, H, W) float in [-1, 1], (F,) int64
    f = dataset.sample_factors(64, rng)        # (64, F) int64
    x = dataset.images_from_factors(f)         # (64, C, H, W) float32 in [-1, 1]

Real datasets are read from the files users already have (never downloaded); ``synth-*`` datasets are
rendered from the factor values and need no file.
"""

from __future__ import annotations

from typing import Dict, Type

from ldm_dis.data.arrays import ArrayDataset
from ldm_dis.data.base import GroundTruthDataset
from ldm_dis.data.cars3d import Cars3D
from ldm_dis.data.celeba import CelebA
from ldm_dis.data.dsprites import DSprites
from ldm_dis.data.errors import DatasetError
from ldm_dis.data.mpi3d import MPI3D, mpi3d_factor_sizes
from ldm_dis.data.shapes3d import Shapes3D
from ldm_dis.data.synthetic_dsprites import SyntheticDSprites
from ldm_dis.data.synthetic_shapes3d import SyntheticShapes3D
from ldm_dis.registry import lookup

# data.name -> class; each is built by its ``from_config(data_cfg)``
DATASETS: Dict[str, Type[GroundTruthDataset]] = {
    "shapes3d": Shapes3D,
    "mpi3d": MPI3D,
    "cars3d": Cars3D,
    "dsprites": DSprites,
    "celeba": CelebA,
    "arrays": ArrayDataset,
    "synth-shapes3d": SyntheticShapes3D,
    "synth-dsprites": SyntheticDSprites,
}


def build_dataset(data_cfg) -> GroundTruthDataset:
    """``data_cfg`` is the ``data`` section of the config (a DataConfig, DictConfig or plain dict)."""
    if isinstance(data_cfg, dict):
        from omegaconf import OmegaConf

        from ldm_dis.config.schema import DataConfig

        data_cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), data_cfg)
    return lookup(DATASETS, "data.name", data_cfg.name, DatasetError).from_config(data_cfg)


__all__ = ["DATASETS", "DatasetError", "GroundTruthDataset", "build_dataset", "mpi3d_factor_sizes"]
