"""What every ``ldm-dis`` subcommand shares: the help layout, the RUN argument and the overwrite guard.

A trained run is named the same way by every command: a positional RUN (a run folder, a checkpoint
folder or a file in one). ``--checkpoint RUN`` is still accepted where it used to be the only way, with
a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RUN_HELP = "run folder (its newest checkpoint), a checkpoint folder, or a file in one"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; every option with a meaningful default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is None or isinstance(default, bool) or default == []
                or default is argparse.SUPPRESS or "default" in text.lower()):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


def add_command_parser(subparsers, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    """A subcommand's parser with the shared formatter; ``description`` is shown by ``--help``."""
    return subparsers.add_parser(name, help=help_text, description=description, formatter_class=HelpFormatter)


def add_run_argument(parser: argparse.ArgumentParser, required: bool = True, help_text: str = RUN_HELP) -> None:
    """RUN as the first positional argument; ``--checkpoint RUN`` as a hidden, deprecated alias."""
    parser.add_argument("run", nargs="?", metavar="RUN", help=help_text)
    parser.add_argument("--checkpoint", dest="deprecated_checkpoint", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(run_required=required, run_parser=parser)


def settle_run_argument(args: argparse.Namespace) -> None:
    """After parsing: fold ``--checkpoint`` into ``args.run`` (with a warning); a missing RUN is a usage error."""
    parser = getattr(args, "run_parser", None)
    if parser is None:
        return
    if args.deprecated_checkpoint is not None:
        if args.run is not None:
            parser.error("name the run once: RUN, or the older --checkpoint RUN, not both")
        print(f"warning: --checkpoint RUN is deprecated; name the run first: {parser.prog} RUN ...", file=sys.stderr)
        args.run = args.deprecated_checkpoint
    if args.run_required and args.run is None:
        parser.error("the following argument is required: RUN")


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output file if it exists (without it, an existing file is kept and "
                             "the command stops)")


def check_writable(path: str | Path, args: argparse.Namespace) -> Path:
    """``path`` unless it exists and ``--overwrite`` was not given: then a UserInputError naming it."""
    from ldm_dis.errors import UserInputError

    path = Path(path)
    if path.exists() and not getattr(args, "overwrite", False):
        raise UserInputError(f"{path} exists; pass --overwrite to replace it, or --out to write another file")
    return path
