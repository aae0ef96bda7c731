"""What the picture commands share (``sample``, ``attention``, ``plot``): their common arguments, where a
picture goes (never over an existing file without ``--overwrite``), and the unit labels by best-matching factor."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

PICTURES_DIR = "pictures"


def add_common(parser: argparse.ArgumentParser, what: str, seed_help: Optional[str] = None,
               sampling: bool = True) -> None:
    """RUN, ``--out`` (default ``<run>/pictures/<what>.png``), ``--overwrite``; ``--seed`` when ``seed_help``
    says what it chooses; the DDIM options when ``sampling``."""
    from ldm_dis.commands.arguments import add_overwrite, add_run_argument

    add_run_argument(parser)
    parser.add_argument("--out", default=None, metavar="PNG", help=f"output PNG (default: RUN/{PICTURES_DIR}/{what}.png)")
    add_overwrite(parser)
    parser.set_defaults(picture_name=what)
    if seed_help:
        parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="the dataset file, when the run's data.path is elsewhere on this machine (synth-* data needs none)")
    if sampling:
        parser.add_argument("--steps", type=int, default=None,
                            help="DDIM steps (default: the run's model.diffusion.sample_steps; the paper used 100)")
        parser.add_argument("--eta", type=float, default=None,
                            help="DDIM eta (default: the run's model.diffusion.eta; 0 is deterministic, the paper's choice)")
        parser.add_argument("--batch-size", type=int, default=64, help="images sampled at once")


def add_nmi_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nmi-images", type=int, default=2000,
                        help="images encoded to find each unit's best factor (0: no factor labels)")


def out_path(args) -> Path:
    """Where the picture goes; refuses an existing file unless ``--overwrite`` (check it before the work)."""
    from ldm_dis.commands.arguments import check_writable
    from ldm_dis.runs import run_dir_of

    path = Path(args.out) if args.out else run_dir_of(args.run) / PICTURES_DIR / f"{args.picture_name}.png"
    return check_writable(path, args)


def ddim_settings(ldm, args) -> Tuple[int, float]:
    """(DDIM steps, eta): ``--steps`` / ``--eta``, or the run's own ``model.diffusion`` values."""
    diffusion = ldm.cfg.model.diffusion
    steps = args.steps if args.steps is not None else diffusion.sample_steps
    eta = args.eta if args.eta is not None else diffusion.eta
    return int(steps), float(eta)


def factor_nmi(ldm, count: int, seed: int) -> Optional[np.ndarray]:
    """NMI (F, N) of every (factor, unit) over ``count`` dataset images (EMA units); None when count is 0."""
    from ldm_dis.sampling.components import dataset_images, encode_in_batches
    from ldm_dis.viz.unit_labels import unit_factor_nmi

    if count <= 0:
        return None
    images, factors = dataset_images(ldm.dataset, min(count, len(ldm.dataset)), seed, ldm.device)
    units = encode_in_batches(ldm.encode, images).numpy()
    return unit_factor_nmi(units, factors, seed=seed)


def labels_for_units(ldm, args) -> Optional[List[str]]:
    """``best factor + NMI`` per unit, or None with ``--nmi-images 0``."""
    from ldm_dis.viz.unit_labels import unit_labels

    nmi = factor_nmi(ldm, args.nmi_images, args.seed + 1)  # other images than the pictured ones
    return None if nmi is None else unit_labels(nmi, ldm.dataset.factor_names)


def title_of(ldm, args=None, what: Optional[str] = None) -> str:
    """"synth-shapes3d, dyga, step 300, DDIM 100", after ``what: `` when given. Grids go without ``what``: their
    title is not wrapped and must fit over a few 64-pixel columns; their row labels say what they show."""
    name = ldm.checkpoint.name
    step = f"step {int(name[5:])}" if name.startswith("step_") and name[5:].isdigit() else name
    ddim = f", DDIM {ddim_settings(ldm, args)[0]}" if args is not None and hasattr(args, "steps") else ""
    text = f"{ldm.cfg.data.name}, {ldm.cfg.model.bottleneck.kind}, {step}{ddim}"
    return f"{what}: {text}" if what else text
