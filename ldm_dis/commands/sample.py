"""``ldm-dis sample``: pictures drawn from a trained run.

    ldm-dis sample traverse runs/factorqvae --images 4 --steps 8      # latent traversals (VAE baselines)
    ldm-dis sample swap runs/factorqvae --pairs 3                     # latent swaps (VAE baselines)

``traverse`` (FactorQVAE paper figures 2-4): for each source image, one row per latent dimension, in which
that dimension takes ``--steps`` values and the others keep the image's code. Values span the range of
the dimension's codes over ``--reference`` images; for quantized latents they are snapped to the values
the latent can take (its codebook), so every picture decodes a code the model can produce.

``swap`` (figure 8): for a pair of images (a, b), one picture per latent dimension j: a's code with
dimension j taken from b. Each row is [a, b, swap 1, ..., swap d].

Each sub-command is one ``_add_<name>`` function (its arguments) and one function that runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def add_parser(subparsers, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="sample_command", metavar="WHAT", required=True)
    _add_traverse(sub)
    _add_swap(sub)
    from ldm_dis.commands.sample_ldm import add_ldm_parsers  # interchange, interpolate (LDM runs)

    add_ldm_parsers(sub)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder (its newest checkpoint) or a checkpoint folder")
    parser.add_argument("--out", default=None, help="PNG path (default: <run>/samples/<what>.png)")
    parser.add_argument("--seed", type=int, default=0, help="which images are drawn from the dataset")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="the dataset file, when the run's data.path is elsewhere on this machine")


# ------------------------------------------------------------------------------------------ loading
def _load_baseline(run: str, data_path=None):
    """(cfg, model in eval mode, dataset) of a VAE-family run; the weights from the run's own files."""
    from ldm_dis.baselines.model import KINDS, BaselineModel
    from ldm_dis.errors import UserInputError
    from ldm_dis.runs import load_run_config
    from ldm_dis.sampling.components import run_dataset

    cfg = load_run_config(run)
    if cfg.model.kind not in KINDS:
        raise UserInputError(
            f"{run} is a model.kind={cfg.model.kind!r} run; traversals and swaps are drawn for the VAE "
            f"baselines {sorted(KINDS)}"
        )
    return cfg, BaselineModel.from_pretrained(run), run_dataset(cfg, data_path)


def _images(dataset, count: int, seed: int, device) -> torch.Tensor:
    """``count`` images (count, C, H, W) in [-1, 1], chosen at random without replacement."""
    indices = np.random.default_rng(seed).choice(len(dataset), min(count, len(dataset)), replace=False)
    return torch.stack([dataset[int(i)][0] for i in indices]).to(device)


def _out_path(args, what: str) -> Path:
    from ldm_dis.runs import run_dir_of

    return Path(args.out) if args.out else run_dir_of(args.run) / "samples" / f"{what}.png"


# ---------------------------------------------------------------------------------------- traverse
def _add_traverse(sub) -> None:
    parser = sub.add_parser("traverse", help="latent traversals of the VAE baselines")
    _common(parser)
    parser.add_argument("--images", type=int, default=2, help="source images (one block of rows each)")
    parser.add_argument("--steps", type=int, default=8, help="values per latent dimension")
    parser.add_argument("--reference", type=int, default=512, help="images whose codes set each dimension's range")
    parser.set_defaults(func=traverse)


def traverse(args) -> int:
    from ldm_dis.baselines.pictures import traversal_grid
    from ldm_dis.viz.grids import save_image_grid

    cfg, model, dataset = _load_baseline(args.run, args.data)
    device = next(model.parameters()).device
    images = _images(dataset, args.images, args.seed, device)
    reference = _images(dataset, args.reference, args.seed + 1, device)
    pictures = traversal_grid(model, images, reference, args.steps)
    d = model.latent_dim
    labels = [f"img {i} z{j + 1}" for i in range(len(images)) for j in range(d)]
    path = save_image_grid(pictures, _out_path(args, "traverse"), nrow=args.steps, row_labels=labels,
                           title=f"{cfg.model.kind} latent traversals ({cfg.data.name})")
    print(f"traversals written to {path}")
    return 0


# -------------------------------------------------------------------------------------------- swap
def _add_swap(sub) -> None:
    parser = sub.add_parser("swap", help="latent swaps between image pairs of the VAE baselines")
    _common(parser)
    parser.add_argument("--pairs", type=int, default=2, help="image pairs (one row each)")
    parser.set_defaults(func=swap)


def swap(args) -> int:
    from ldm_dis.baselines.pictures import swap_grid
    from ldm_dis.viz.grids import save_image_grid

    cfg, model, dataset = _load_baseline(args.run, args.data)
    device = next(model.parameters()).device
    images = _images(dataset, 2 * args.pairs, args.seed, device)
    first, second = images[: args.pairs], images[args.pairs: 2 * args.pairs]
    pictures = swap_grid(model, first, second)
    d = model.latent_dim
    path = save_image_grid(pictures, _out_path(args, "swap"), nrow=d + 2,
                           col_labels=["a", "b"] + [f"z{j + 1}" for j in range(d)],
                           title=f"{cfg.model.kind} latent swaps ({cfg.data.name})")
    print(f"swaps written to {path}")
    return 0
