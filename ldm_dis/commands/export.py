"""``ldm-dis export RUN_OR_CHECKPOINT [--out codes.npz]``: the representation of the whole training set,
in dataset order, as the ``.npz`` read by ``ldm-dis evaluate`` (``codes``, ``factors``, ``factor_names``,
and the run's ``unit_pca`` / ``infomec_active``, so ``evaluate --codes`` scores it as ``--checkpoint`` would)."""

from __future__ import annotations

DESCRIPTION = """Write the representation of a trained run as an .npz for ldm-dis evaluate --codes.

    ldm-dis export runs/shapes3d                          # every image, in dataset order
    ldm-dis export runs/shapes3d --num 50000 --out codes50k.npz

The file holds codes ((n, N) scalars or (n, N, D) vector units), factors ((n, F) integer values) and
factor_names. --num N draws N rows at random (seeded by --seed, sorted in dataset order) with their
factors; evaluate scores such a partial export by sampling among its rows. A progress bar shows the
rate and the time left.
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser, add_overwrite, add_run_argument

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    add_run_argument(parser)
    parser.add_argument("--out", default=None, metavar="NPZ", help="output file (default: RUN/codes.npz)")
    parser.add_argument("--num", type=int, default=None, metavar="N",
                        help="export N randomly chosen images (default: the whole dataset)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the images of --num")
    parser.add_argument("--batch-size", type=int, default=512, help="images encoded at once")
    add_overwrite(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ldm_dis.commands.arguments import check_writable
    from ldm_dis.runs import run_dir_of
    from ldm_dis.training.export import CODES_FILE, export_representation

    out = check_writable(args.out or run_dir_of(args.run) / CODES_FILE, args)
    path = export_representation(args.run, out, args.batch_size, num=args.num, seed=args.seed)
    print(f"codes written to {path}")
    return 0
