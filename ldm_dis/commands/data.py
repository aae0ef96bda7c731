"""``ldm-dis data``: look at, describe and prepare the ground-truth datasets.

    ldm-dis data show --dataset synth-shapes3d --resolution 32 --out shapes.png
    ldm-dis data info --dataset mpi3d --path mpi3d_toy.npz
    ldm-dis data prepare --dataset shapes3d --path 3dshapes.h5 [--cache-dir DIR]

``show`` writes a PNG: rows of random samples, then one traversal row per factor (that factor stepped
through its values, the others fixed), labelled with the factor names. ``prepare`` writes the
uncompressed ``.npy`` copy of a file's images that the loaders then read by rows.
"""

from __future__ import annotations

import argparse

import numpy as np


def add_parser(subparsers, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def dataset_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=None, help="take the data section from this config (flags below override it)")
        p.add_argument("--dataset", default=None, help="data.name: shapes3d, mpi3d, cars3d, dsprites, celeba, arrays, synth-shapes3d, synth-dsprites")
        p.add_argument("--path", default=None, help="data.path: the dataset file or folder")
        p.add_argument("--resolution", type=int, default=None, help="data.resolution (default 64)")
        p.add_argument("--cache-dir", default=None, help="data.cache_dir: where .npy caches go (default: next to the file)")
        p.add_argument("--factor-sizes", default=None, help="data.factor_sizes, comma separated (mpi3d, arrays)")
        p.add_argument("--images-key", default=None, help="data.images_key (arrays)")
        p.add_argument("--labels-key", default=None, help="data.labels_key (arrays)")

    show = commands.add_parser("show", help="write a PNG of samples and factor traversals")
    dataset_args(show)
    show.add_argument("--out", default="dataset.png", help="PNG to write (default dataset.png)")
    show.add_argument("--columns", type=int, default=15, help="images per row (default 15: every Shapes3D value)")
    show.add_argument("--sample-rows", type=int, default=2, help="rows of random samples (default 2)")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(func=run_show)

    info = commands.add_parser("info", help="print factor names and sizes, length, channels and file")
    dataset_args(info)
    info.set_defaults(func=run_info)

    prepare = commands.add_parser("prepare", help="write the uncompressed .npy image cache of a dataset file")
    dataset_args(prepare)
    prepare.set_defaults(func=run_prepare)


def data_config(args):
    """The ``data`` section from ``--config`` (or the defaults) with the flags applied."""
    from omegaconf import OmegaConf

    from ldm_dis.config.loading import load_config
    from ldm_dis.config.schema import DataConfig

    cfg = load_config(args.config).data if args.config else OmegaConf.structured(DataConfig)
    flags = {"name": args.dataset, "path": args.path, "resolution": args.resolution, "cache_dir": args.cache_dir,
             "images_key": args.images_key, "labels_key": args.labels_key}
    for key, value in flags.items():
        if value is not None:
            cfg[key] = value
    if args.factor_sizes:
        cfg.factor_sizes = [int(s) for s in args.factor_sizes.split(",")]
    return cfg


def traversal_rows(dataset, columns: int, rng: np.random.Generator):
    """One row per factor, ``columns`` wide: (images (F * columns, C, H, W) with NaN in unused cells, labels)."""
    base = dataset.sample_factors(1, rng)[0]
    rows, labels = [], []
    for k, (name, size) in enumerate(zip(dataset.factor_names, dataset.factor_sizes)):
        values = np.unique(np.round(np.linspace(0, size - 1, min(size, columns))).astype(np.int64))
        factors = np.repeat(base[None], len(values), axis=0)
        factors[:, k] = values
        row = np.full((columns, dataset.num_channels, dataset.resolution, dataset.resolution), np.nan, dtype=np.float32)
        row[: len(values)] = dataset.images_from_factors(factors)  # NaN cells stay blank
        rows.append(row)
        shown = "all" if len(values) == size else f"{len(values)} of"
        labels.append(f"{name} ({shown} {size})")
    return np.concatenate(rows), labels


def run_show(args) -> int:
    from ldm_dis.data import build_dataset
    from ldm_dis.viz.grids import save_image_grid

    dataset = build_dataset(data_config(args))
    rng = np.random.default_rng(args.seed)
    n = args.columns * args.sample_rows
    picks = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    images = [dataset.images_at(np.sort(picks))]
    labels = ["samples"] + [""] * (args.sample_rows - 1)
    try:
        traversals, names = traversal_rows(dataset, args.columns, rng)
        images.append(traversals)
        labels += names
    except TypeError:  # celeba: attributes, no factor grid to traverse
        pass
    grid = np.concatenate(images)
    path = save_image_grid(grid, args.out, nrow=args.columns, row_labels=labels, title=dataset.describe().splitlines()[0])
    print(f"wrote {path}")
    return 0


def run_info(args) -> int:
    from ldm_dis.data import build_dataset

    dataset = build_dataset(data_config(args))
    print(dataset.describe())
    width = max(len(n) for n in dataset.factor_names)
    for name, size in zip(dataset.factor_names, dataset.factor_sizes):
        print(f"  {name:<{width}}  {size}")
    return 0


def run_prepare(args) -> int:
    from ldm_dis.data import build_dataset
    from ldm_dis.data.storage import H5Array, RawArray, cache_path, write_npy_cache

    cfg = data_config(args)
    dataset = build_dataset(cfg)  # a compressed .npz member is converted here already
    source = getattr(dataset, "source", None)
    if isinstance(source, RawArray):
        print(f"{dataset.name}: images are read in place from {source.path} (uncompressed); nothing to prepare")
        return 0
    if not isinstance(source, H5Array):
        print(f"{dataset.name}: images are read in place (no image array to cache)")
        return 0
    out = write_npy_cache(source, cache_path(source.path, source.key, cfg.cache_dir))
    print(f"{dataset.name}: wrote {out} ({source.dtype} {source.shape}); loaders now read it instead of {source.path}")
    return 0
