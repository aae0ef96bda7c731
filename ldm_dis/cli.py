"""``ldm-dis``: one command with a subcommand per job.

Each subcommand lives in ``ldm_dis/commands/<name>.py`` with ``add_parser(subparsers)`` that registers
its arguments and sets ``func(args) -> int``. Modules are imported lazily only for the chosen command,
so ``ldm-dis --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# name -> one-line help; order is the order of `ldm-dis --help`
COMMANDS = {
    "quickstart": "the main job end to end on the embedded default: data, VQ-GAN, LDM, metrics, pictures",
    "data": "render, inspect and prepare ground-truth datasets",
    "train": "train a model (VQ-GAN, latent diffusion, or a VAE baseline)",
    "export": "write the codes of a trained run for the whole dataset (.npz for evaluate)",
    "evaluate": "score a checkpoint or codes with disentanglement metrics",
    "sample": "draw latent traversals, swaps and interchange grids",
    "attention": "cross-attention heat maps per latent unit",
    "plot": "unit scatter and loss curves",
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldm-dis", description="Disentangled representation learning with latent diffusion models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if name == selected:
            importlib.import_module(f"ldm_dis.commands.{name}").add_parser(sub, name, help_text)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from ldm_dis.errors import UserInputError

    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"ldm-dis {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
