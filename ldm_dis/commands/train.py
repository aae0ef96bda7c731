"""``ldm-dis train`` and ``accelerate launch train.py``: the same arguments and the same ``run``."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Sequence

DESCRIPTION = """Train what a config describes: the VQ-GAN first stage and the latent diffusion model
(model.kind=ldm), or a VAE baseline (model.kind=betavae, factorqvae, ...).

    ldm-dis train --config quickstart.yaml train.max_steps=200 run.dir=runs/try
    accelerate launch train.py --config mpi3d.yaml data.path=/data/mpi3d_toy.npz run.dir=runs/mpi3d
    accelerate launch --mixed_precision bf16 --multi_gpu --num_processes 4 train.py --config shapes3d.yaml
    ldm-dis train --resume run.dir=runs/mpi3d        # continue, with the run's own config.yaml

--config takes a path or the name of a config shipped with ldm_dis (quickstart.yaml, shapes3d.yaml,
mpi3d.yaml, cars3d.yaml, celeba.yaml, dsprites.yaml, baselines/...). KEY=VALUE overrides any config key;
a misspelt key fails at once with the nearest valid one. The run folder (run.dir) receives config.yaml,
log.jsonl, checkpoints/ and samples/. The VQ-GAN first stage is trained once per first-stage config and
shared by later runs through a cache folder (LDM_DIS_CACHE, else $XDG_CACHE_HOME/ldm_dis, else
~/.cache/ldm_dis; run.first_stage_cache overrides it). train.batch_size is the global batch, split
across processes; train.log_with sends scalars, sample and interchange grids to TensorBoard, W&B, ... as well.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file: a path, or the name of a config shipped with ldm_dis")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=1000")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.dir from its newest checkpoint (without --config: run.dir's config.yaml)")
    parser.add_argument("--export-codes", nargs="?", const="", default=None, metavar="NPZ",
                        help="after training, write the representation of the whole dataset (default run.dir/codes.npz)")


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
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


def run(args) -> int:
    """Train what the config describes."""
    from ldm_dis.training.pipeline import run_training
    from ldm_dis.training.trainer import TrainingDiverged

    if args.export_codes and "=" in args.export_codes:  # `--export-codes a.b=1`: an override, not a file name
        args.overrides.append(args.export_codes)
        args.export_codes = ""
    cfg = _config(args)
    _print_protocol_differences(cfg)
    try:
        run_training(cfg, resume=args.resume, export_codes=args.export_codes)
    except TrainingDiverged as exc:
        print(f"training stopped: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # checkpoints say so themselves (CheckpointError); this is the log, a sample...
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"training stopped: cannot write {exc.filename or 'to ' + str(cfg.run.dir)}: {exc.strerror}. "
              "Checkpoints are written atomically, so the newest one is intact: free some space and --resume",
              file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``train.py`` at the repository root."""
    from ldm_dis.errors import UserInputError

    from ldm_dis.commands.arguments import HelpFormatter

    parser = argparse.ArgumentParser(prog="train.py", description=DESCRIPTION, formatter_class=HelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserInputError as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return 2
