"""``ldm-dis sample``: pictures drawn from a trained run (LDM interchange and interpolation in
``sample_ldm.py``; the VAE baselines' traversals and swaps here)."""

from __future__ import annotations

DESCRIPTION = """Pictures drawn from a trained run.

    ldm-dis sample interchange runs/quickstart        # latent interchange grid (LDM runs)
    ldm-dis sample interpolate runs/quickstart        # latent interpolation strips (LDM runs)
    ldm-dis sample traverse runs/factorqvae           # latent traversals (VAE baselines)
    ldm-dis sample swap runs/factorqvae               # latent swaps (VAE baselines)

Pictures go to RUN/pictures/ unless --out says otherwise; an existing file is kept unless --overwrite.
ldm-dis sample WHAT --help describes each picture.
"""

TRAVERSE = """Latent traversals of a VAE-baseline run (FactorQVAE paper, figures 2-4).

    ldm-dis sample traverse runs/factorqvae --images 4 --steps 8

For each source image, one row per latent dimension u0, u1, ...: that dimension takes --steps values
while the others keep the image's code. The values span the 2nd to 98th percentile of the dimension's
codes over --reference images; for quantized latents they are snapped to the values the latent can take
(its codebook), so every picture decodes a code the model can produce.
"""

SWAP = """Latent swaps between image pairs of a VAE-baseline run (FactorQVAE paper, figure 8).

    ldm-dis sample swap runs/factorqvae --pairs 3

For a pair of images (a, b), one picture per latent dimension j: a's code with dimension u<j> taken
from b. Each row is [a, b, a with u0 from b, a with u1 from b, ...].
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    sub = parser.add_subparsers(dest="sample_command", metavar="WHAT", required=True)
    _add_traverse(sub)
    _add_swap(sub)
    from ldm_dis.commands.sample_ldm import add_ldm_parsers  # interchange, interpolate (LDM runs)

    add_ldm_parsers(sub)


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


# ---------------------------------------------------------------------------------------- traverse
def _add_traverse(sub) -> None:
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.picture_args import add_common

    parser = add_command_parser(sub, "traverse", "latent traversals of the VAE baselines", TRAVERSE)
    add_common(parser, "traverse", seed_help="chooses the dataset images", sampling=False)
    parser.add_argument("--images", type=int, default=2, help="source images (one block of rows each)")
    parser.add_argument("--steps", type=int, default=8, help="values per latent dimension")
    parser.add_argument("--reference", type=int, default=512, help="images whose codes set each dimension's range")
    parser.set_defaults(func=traverse)


def traverse(args) -> int:
    from ldm_dis.baselines.pictures import traversal_grid
    from ldm_dis.commands.picture_args import out_path
    from ldm_dis.sampling.components import dataset_images
    from ldm_dis.viz.grids import save_image_grid

    path = out_path(args)
    cfg, model, dataset = _load_baseline(args.run, args.data)
    device = next(model.parameters()).device
    images, _ = dataset_images(dataset, args.images, args.seed, device)
    reference, _ = dataset_images(dataset, min(args.reference, len(dataset)), args.seed + 1, device)
    pictures = traversal_grid(model, images, reference, args.steps)
    d = model.latent_dim
    labels = [f"img {i} u{j}" for i in range(len(images)) for j in range(d)]
    save_image_grid(pictures, path, nrow=args.steps, row_labels=labels,
                    title=f"{cfg.model.kind} latent traversals ({cfg.data.name})")
    print(f"traversals written to {path}")
    return 0


# -------------------------------------------------------------------------------------------- swap
def _add_swap(sub) -> None:
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.picture_args import add_common

    parser = add_command_parser(sub, "swap", "latent swaps between image pairs of the VAE baselines", SWAP)
    add_common(parser, "swap", seed_help="chooses the dataset images", sampling=False)
    parser.add_argument("--pairs", type=int, default=2, help="image pairs (one row each)")
    parser.set_defaults(func=swap)


def swap(args) -> int:
    from ldm_dis.baselines.pictures import swap_grid
    from ldm_dis.commands.picture_args import out_path
    from ldm_dis.sampling.components import dataset_images
    from ldm_dis.viz.grids import save_image_grid

    path = out_path(args)
    cfg, model, dataset = _load_baseline(args.run, args.data)
    device = next(model.parameters()).device
    images, _ = dataset_images(dataset, 2 * args.pairs, args.seed, device)
    first, second = images[: args.pairs], images[args.pairs: 2 * args.pairs]
    pictures = swap_grid(model, first, second)
    d = model.latent_dim
    save_image_grid(pictures, path, nrow=d + 2, col_labels=["a", "b"] + [f"u{j}" for j in range(d)],
                    title=f"{cfg.model.kind} latent swaps ({cfg.data.name})")
    print(f"swaps written to {path}")
    return 0
