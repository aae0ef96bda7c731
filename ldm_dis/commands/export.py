"""``ldm-dis export RUN_OR_CHECKPOINT [--out codes.npz]``: the representation of the whole training set,
in dataset order, as the ``.npz`` read by ``ldm-dis evaluate`` (``codes``, ``factors``, ``factor_names``,
and the run's ``unit_pca`` / ``infomec_active``, so ``evaluate --codes`` scores it as ``--checkpoint`` would)."""

from __future__ import annotations

import argparse


def add_parser(subparsers, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a run folder (its newest checkpoint) or a checkpoint folder")
    parser.add_argument("--out", default=None, help="output .npz (default: <run folder>/codes.npz)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ldm_dis.training.export import export_representation

    path = export_representation(args.checkpoint, args.out, args.batch_size)
    print(f"codes written to {path}")
    return 0
