"""Figures of a trained run that need no sampling: the unit scatter and the loss curves.

    ldm-dis plot scatter runs/quickstart      # unit scatter (paper Fig. 1, 11)
    ldm-dis plot curves runs/quickstart       # loss curves from the run's log.jsonl
"""

from __future__ import annotations

from pathlib import Path

SCATTER = """Unit scatter of a trained LDM run (paper Fig. 1, 11).

    ldm-dis plot scatter runs/quickstart [--images 2000] [--method pca]

For each factor, the unit that matches it best (highest NMI over --images dataset images): its
D-dimensional features projected to 2-D (PaCMAP when installed, else PCA), one point per image,
coloured by the factor's true value. Well separated colours mean the unit encodes the factor.
"""

CURVES = """Loss curves of a run, from its log.jsonl (a run that is still training works too).

    ldm-dis plot curves runs/quickstart

One panel per logged value against the step (loss terms, learning rate, DyGA anchor counts, speed);
values that never changed are listed under the title instead of getting a panel.
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.picture_args import add_common

    parser = add_command_parser(subparsers, name, help_text, __doc__)
    sub = parser.add_subparsers(dest="plot_command", metavar="WHAT", required=True)

    scatter_parser = add_command_parser(sub, "scatter", "one unit per factor, 2-D projection coloured by the factor",
                                        SCATTER)
    add_common(scatter_parser, "scatter", seed_help="chooses the dataset images", sampling=False)
    scatter_parser.add_argument("--images", type=int, default=2000, help="dataset images encoded")
    scatter_parser.add_argument("--method", choices=["auto", "pca", "pacmap"], default="auto",
                                help="2-D projection (auto: PaCMAP if installed, else PCA)")
    scatter_parser.set_defaults(func=scatter)

    curves_parser = add_command_parser(sub, "curves", "loss curves from the run log", CURVES)
    add_common(curves_parser, "loss_curves", sampling=False)
    curves_parser.set_defaults(func=curves)


def scatter(args) -> int:
    from ldm_dis.commands.picture_args import out_path, title_of
    from ldm_dis.sampling.components import dataset_images, encode_in_batches, load_ldm_components
    from ldm_dis.viz.scatter import save_unit_scatter
    from ldm_dis.viz.unit_labels import unit_factor_nmi

    path = out_path(args)
    ldm = load_ldm_components(args.run, args.data)
    images, factors = dataset_images(ldm.dataset, min(args.images, len(ldm.dataset)), args.seed, ldm.device)
    units = encode_in_batches(ldm.encode, images).numpy()  # (n, N, D)
    nmi = unit_factor_nmi(units, factors, seed=args.seed)
    save_unit_scatter(path, units, factors, ldm.dataset.factor_names, nmi, method=args.method,
                      title=title_of(ldm, args, f"units over {len(units)} images"), seed=args.seed)
    print(f"unit scatter written to {path}")
    return 0


def curves(args) -> int:
    from ldm_dis.runs import run_dir_of
    from ldm_dis.commands.picture_args import PICTURES_DIR, out_path
    from ldm_dis.errors import UserInputError
    from ldm_dis.training.run_log import LOG_FILE, read_log
    from ldm_dis.viz.curves import save_loss_curves

    given = Path(args.run)
    # a run still before its first checkpoint already has a log
    run_dir = given if (given / LOG_FILE).is_file() else run_dir_of(given)
    records = read_log(run_dir)
    if not records:
        raise UserInputError(f"no training log: {run_dir / LOG_FILE} is missing or empty")
    if not args.out:  # out_path would look for a checkpoint, which a fresh run does not have yet
        args.out = str(run_dir / PICTURES_DIR / f"{args.picture_name}.png")
    path = save_loss_curves(out_path(args), records, title=f"training log of {run_dir}")
    print(f"loss curves written to {path}")
    return 0
