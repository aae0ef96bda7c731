"""What the picture commands of an LDM run share (``sample interchange``, ``sample interpolate``, ``attention``,
``plot``): their common arguments, where a picture goes, and the unit labels by best-matching factor."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

import numpy as np

PICTURES_DIR = "pictures"


def add_common(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="run folder (its newest checkpoint), checkpoint folder or a file in one")
    parser.add_argument("--out", default=None, metavar="PNG", help="output PNG (default: <run>/pictures/<what>.png)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the images and the initial noise")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="the dataset file, when the run's data.path is elsewhere on this machine (synth-* data needs none)")
    if sampling:
        parser.add_argument("--steps", type=int, default=100, help="DDIM steps (paper: 100)")
        parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic, the paper's choice)")
        parser.add_argument("--batch-size", type=int, default=64, help="panels sampled at once")


def add_nmi_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nmi-images", type=int, default=2000,
                        help="images encoded to find each unit's best factor (0: no factor labels)")


def out_path(args, what: str) -> Path:
    from ldm_dis.runs import run_dir_of

    return Path(args.out) if args.out else run_dir_of(args.checkpoint) / PICTURES_DIR / f"{what}.png"


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
    ddim = f", DDIM {args.steps}" if args is not None and hasattr(args, "steps") else ""
    text = f"{ldm.cfg.data.name}, {ldm.cfg.model.bottleneck.kind}, {step}{ddim}"
    return f"{what}: {text}" if what else text
