"""``ldm-dis plot``: figures of a run that need no sampling.

    ldm-dis plot scatter --checkpoint runs/quickstart --out scatter.png      # unit scatter (paper Fig. 1, 11)
    ldm-dis plot curves --checkpoint runs/quickstart --out curves.png        # loss curves from run.dir/log.jsonl

``scatter``: for each factor, the unit that matches it best (highest NMI) over ``--images`` dataset images,
its D-dimensional features projected to 2-D (PaCMAP when installed, else PCA), coloured by the factor value.
``curves``: every numeric value the trainer logged, against the step.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.picture_args import add_common

    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="plot_command", metavar="WHAT", required=True)

    scatter_parser = sub.add_parser("scatter", help="one unit per factor, 2-D projection coloured by the factor")
    add_common(scatter_parser, sampling=False)
    scatter_parser.add_argument("--images", type=int, default=2000, help="dataset images encoded")
    scatter_parser.add_argument("--method", choices=["auto", "pca", "pacmap"], default="auto",
                                help="2-D projection (auto: PaCMAP if installed, else PCA)")
    scatter_parser.set_defaults(func=scatter)

    curves_parser = sub.add_parser("curves", help="loss curves from the run log")
    add_common(curves_parser, sampling=False)
    curves_parser.set_defaults(func=curves)


def scatter(args) -> int:
    from ldm_dis.commands.picture_args import out_path, title_of
    from ldm_dis.sampling.components import dataset_images, encode_in_batches, load_ldm_components
    from ldm_dis.viz.scatter import save_unit_scatter
    from ldm_dis.viz.unit_labels import unit_factor_nmi

    ldm = load_ldm_components(args.checkpoint, args.data)
    images, factors = dataset_images(ldm.dataset, min(args.images, len(ldm.dataset)), args.seed, ldm.device)
    units = encode_in_batches(ldm.encode, images).numpy()  # (n, N, D)
    nmi = unit_factor_nmi(units, factors, seed=args.seed)
    path = save_unit_scatter(out_path(args, "scatter"), units, factors, ldm.dataset.factor_names, nmi,
                             method=args.method, title=title_of(ldm, args, f"units over {len(units)} images"),
                             seed=args.seed)
    print(f"unit scatter written to {path}")
    return 0


def curves(args) -> int:
    from ldm_dis.commands.picture_args import out_path
    from ldm_dis.runs import run_dir_of
    from ldm_dis.errors import UserInputError
    from ldm_dis.training.run_log import LOG_FILE, read_log
    from ldm_dis.viz.curves import save_loss_curves

    given = Path(args.checkpoint)
    # a run still before its first checkpoint already has a log
    run_dir = given if (given / LOG_FILE).is_file() else run_dir_of(given)
    records = read_log(run_dir)
    if not records:
        raise UserInputError(f"no training log: {run_dir / LOG_FILE} is missing or empty")
    path = save_loss_curves(out_path(args, "curves"), records, title=f"training log of {run_dir}")
    print(f"loss curves written to {path}")
    return 0
