"""The one error a bad dataset file raises, with where users usually obtain each real dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ldm_dis.errors import UserInputError

# dataset name -> where people usually download it (we never download: these machines are offline)
SOURCES = {
    "shapes3d": "the DeepMind GCS bucket 3d-shapes (https://storage.googleapis.com/3d-shapes/3dshapes.h5)",
    "mpi3d": "https://github.com/rr-learning/disentanglement_dataset (mpi3d_toy.npz, mpi3d_realistic.npz, mpi3d_real.npz)",
    "dsprites": "https://github.com/deepmind/dsprites-dataset (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz)",
    "cars3d": 'the data of Reed et al. 2015 "Deep Visual Analogy-Making" (nips2015-analogy-data.tar.gz, folder cars/ of *.mat)',
    "celeba": "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (img_align_celeba/ and list_attr_celeba.txt)",
}


class DatasetError(UserInputError):
    """A dataset file that is missing or not in the expected format."""


def dataset_error(dataset: str, path: Optional[str | Path], expected: str, found: str) -> DatasetError:
    """One message: which file, what was expected, what was found, where the dataset usually comes from."""
    where = f" Users usually obtain it from {SOURCES[dataset]}." if dataset in SOURCES else ""
    what = f"{dataset} dataset file {str(path)!r}" if path is not None else f"{dataset} dataset"
    return DatasetError(f"{what}: expected {expected}; found {found}.{where}")
