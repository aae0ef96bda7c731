"""``ldm-dis data``: look at, describe and prepare the ground-truth datasets."""

from __future__ import annotations

import argparse

import numpy as np

DESCRIPTION = """Look at, describe and prepare the ground-truth datasets.

    ldm-dis data show --dataset synth-shapes3d --resolution 32 --out shapes.png
    ldm-dis data info --dataset mpi3d --path mpi3d_toy.npz
    ldm-dis data prepare --dataset shapes3d --path 3dshapes.h5 [--cache-dir DIR]

Datasets (--dataset): shapes3d (3dshapes.h5), mpi3d (mpi3d_<variant>.npz), cars3d (a folder of *.mat),
dsprites (the dsprites_ndarray_... .npz), celeba (img_align_celeba/ and list_attr_celeba.txt), arrays
(any .npz/.npy/.h5 with images and labels or factor sizes), and synth-shapes3d / synth-dsprites,
rendered on the fly (no file). Files are never downloaded: point --path at your copy.
"""

SHOW = """Write a PNG of a dataset: rows of random samples, then one traversal row per factor (that factor
stepped through its values, the others fixed), labelled with the factor names."""

INFO = "Print a dataset's factor names and sizes, number of images, channels, resolution and file."

PREPARE = """Write the uncompressed .npy copy of a dataset file's images, which the loaders then read by rows
(for large compressed .npz or .h5 files; next to the file, or in --cache-dir)."""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser, add_overwrite

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def dataset_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=None, help="take the data section from this config (flags below override it)")
        p.add_argument("--dataset", default=None, help="data.name: shapes3d, mpi3d, cars3d, dsprites, celeba, arrays, synth-shapes3d, synth-dsprites")
        p.add_argument("--path", default=None, help="data.path: the dataset file or folder")
        p.add_argument("--resolution", type=int, default=None,
                       help="data.resolution (default: the images' own size; 64 for synth-*)")
        p.add_argument("--cache-dir", default=None, help="data.cache_dir: where .npy caches go (default: next to the file)")
        p.add_argument("--factor-sizes", default=None, help="data.factor_sizes, comma separated (mpi3d, arrays)")
        p.add_argument("--images-key", default=None, help="data.images_key (arrays)")
        p.add_argument("--labels-key", default=None, help="data.labels_key (arrays)")

    show = add_command_parser(commands, "show", "write a PNG of samples and factor traversals", SHOW)
    dataset_args(show)
    show.add_argument("--out", default="dataset.png", metavar="PNG", help="PNG to write")
    add_overwrite(show)
    show.add_argument("--columns", type=int, default=15, help="images per row; 15 shows every Shapes3D value")
    show.add_argument("--sample-rows", type=int, default=2, help="rows of random samples")
    show.add_argument("--seed", type=int, default=0, help="chooses the samples and the fixed factor values")
    show.set_defaults(func=run_show)

    info = add_command_parser(commands, "info", "print factor names and sizes, length, channels and file", INFO)
    dataset_args(info)
    info.set_defaults(func=run_info)

    prepare = add_command_parser(commands, "prepare", "write the uncompressed .npy image cache of a dataset file",
                                 PREPARE)
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
    from ldm_dis.commands.arguments import check_writable
    from ldm_dis.data import build_dataset
    from ldm_dis.viz.grids import save_image_grid

    out = check_writable(args.out, args)
    dataset = build_dataset(data_config(args))
    rng = np.random.default_rng(args.seed)
    n = args.columns * args.sample_rows
    picks = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    images = [dataset.images_at(dataset.grid_indices(np.sort(picks)))]
    labels = ["samples"] + [""] * (args.sample_rows - 1)
    try:
        traversals, names = traversal_rows(dataset, args.columns, rng)
        images.append(traversals)
        labels += names
    except TypeError:  # celeba: attributes, no factor grid to traverse
        pass
    grid = np.concatenate(images)
    path = save_image_grid(grid, out, nrow=args.columns, row_labels=labels, title=dataset.describe().splitlines()[0])
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
