"""``ldm-dis``: one command with a subcommand per job.

Each subcommand lives in ``ldm_dis/commands/<name>.py`` with ``add_parser(subparsers, name, help)`` that
registers its arguments and sets ``func(args) -> int``. Modules are imported only for the chosen command,
so ``ldm-dis --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# name -> one-line help; order is the order of `ldm-dis --help`
COMMANDS = {
    "quickstart": "the whole pipeline on a built-in dataset: data, VQ-GAN, LDM, metrics, pictures",
    "data": "look at, describe and prepare ground-truth datasets",
    "train": "train a model (VQ-GAN + latent diffusion, or a VAE baseline) from a config",
    "export": "write the codes of a trained run (.npz, read by evaluate)",
    "evaluate": "score a trained run, or exported codes, with disentanglement metrics",
    "sample": "latent interchange and interpolation (LDM runs), traversals and swaps (VAE baselines)",
    "attention": "cross-attention heat maps of each latent unit",
    "plot": "unit scatter and loss curves",
    "import": "bring a checkpoint of the reference code (dis-dis) into a saved model",
}
MODULES = {"import": "import_model"}  # command -> module in ldm_dis/commands/, where the name is a Python keyword

EPILOG = """A trained run is named by its folder: ldm-dis evaluate RUN, ldm-dis sample interchange RUN, ...
ldm-dis COMMAND --help describes each command."""


def package_version() -> str:
    """The installed distribution's version; the source tree's when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ldm_dis")
    except PackageNotFoundError:
        from ldm_dis import __version__

        return __version__


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldm-dis", description="Disentangled representation learning with latent diffusion models.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if name == selected:
            importlib.import_module(f"ldm_dis.commands.{MODULES.get(name, name)}").add_parser(sub, name, help_text)
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
    from ldm_dis.commands.arguments import settle_run_argument
    from ldm_dis.errors import UserInputError

    settle_run_argument(args)

    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        print(f"ldm-dis {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
