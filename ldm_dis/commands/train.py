"""``ldm-dis train`` and ``accelerate launch train.py``: one entry, :func:`run`.

    accelerate launch train.py --config mpi3d.yaml train.batch_size=256 run.dir=runs/mpi3d
    accelerate launch train.py --config mpi3d.yaml run.dir=runs/mpi3d --resume
    ldm-dis train --resume run.dir=runs/mpi3d            # the run's own config.yaml, plus overrides
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train.py --config ...  # 2 CPU processes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file (a path, or a name in configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=1000")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.dir from its newest checkpoint (without --config: run.dir's config.yaml)")
    parser.add_argument("--export-codes", nargs="?", const="", default=None, metavar="NPZ",
                        help="after training, write the representation of the whole dataset (default run.dir/codes.npz)")


def add_parser(subparsers, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def _config(args):
    from ldm_dis.config.loading import ConfigError, load_config, parse_overrides

    path = args.config
    if path is None:
        run_dir = dict(parse_overrides(args.overrides)).get("run.dir")
        if not (args.resume and run_dir):
            raise ConfigError("--config is required (or --resume with run.dir=... to reuse that run's config.yaml)")
        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"--resume: {path} does not exist")
    return load_config(path, args.overrides)


def _print_protocol_differences(cfg) -> None:
    """Keys set explicitly against the chosen ``protocol`` are kept; say so once, on the main process."""
    import os

    from ldm_dis.config.protocol import protocol_differences

    if int(os.environ.get("RANK", "0")) == 0:
        for key, value, protocol_value in protocol_differences(cfg):
            print(f"protocol {cfg.protocol}: {key}={value} as set (the protocol's value is {protocol_value})")


def run(args, dataset=None) -> int:
    """Train what the config describes. ``dataset`` replaces ``build_dataset(cfg.data)`` (tests)."""
    from ldm_dis.training.pipeline import run_training
    from ldm_dis.training.trainer import TrainingDiverged

    if args.export_codes and "=" in args.export_codes:  # `--export-codes a.b=1`: an override, not a file name
        args.overrides.append(args.export_codes)
        args.export_codes = ""
    cfg = _config(args)
    _print_protocol_differences(cfg)
    try:
        run_training(cfg, resume=args.resume, export_codes=args.export_codes, dataset=dataset)
    except TrainingDiverged as exc:
        print(f"training stopped: {exc}", file=sys.stderr)
        return 3
    return 0


def main(argv: Sequence[str] | None = None, dataset=None) -> int:
    """``train.py`` at the repository root."""
    from ldm_dis.errors import UserInputError

    parser = argparse.ArgumentParser(prog="train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, dataset=dataset)
    except UserInputError as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return 2
