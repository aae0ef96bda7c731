"""``ldm-dis attention``: cross-attention heat maps of each latent unit over DDIM-generated images
(paper Fig. 4, 9, 10; the DAAM method).

    ldm-dis attention --checkpoint runs/quickstart --out attention.png --images 3

Each image is generated (EMA weights, ``--steps`` DDIM steps) from the units of a dataset image; for every
unit, its cross-attention probabilities are averaged over heads, upsampled to the image size and averaged
over all cross-attention layers and all DDIM steps. One row per image: the generated image, then one heat
map per unit, titled with the unit's best factor (highest NMI) and its share of the image's attention.
The raw maps, float32 (images, units, H, W), each pixel summing to 1 over units, are saved next to the
PNG as ``.npy`` (same name).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.picture_args import add_common, add_nmi_images

    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(parser)
    add_nmi_images(parser)
    parser.add_argument("--images", type=int, default=3, help="generated images: rows of the picture")
    parser.add_argument("--normalize", choices=["unit", "row"], default="unit",
                        help="colour scale per unit map (DAAM: where a unit looks) or per image (how much)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import torch

    from ldm_dis.commands.picture_args import labels_for_units, out_path, title_of
    from ldm_dis.sampling.components import dataset_images, load_ldm_components
    from ldm_dis.viz.attention import save_attention_figure

    ldm = load_ldm_components(args.checkpoint, args.data)
    images, _ = dataset_images(ldm.dataset, args.images, args.seed, ldm.device)
    units = ldm.encode(images)
    labels = labels_for_units(ldm, args)
    generated, maps = [], []
    for start in range(0, len(units), args.batch_size):
        batch = units[start:start + args.batch_size]
        batch_images, batch_maps = ldm.model.attention_maps(batch, ldm.model.noise(args.seed + start, len(batch)),
                                                            steps=args.steps, eta=args.eta)
        generated.append(batch_images.cpu())
        maps.append(batch_maps.cpu())
    generated, maps = torch.cat(generated), torch.cat(maps)  # (B, 3, H, W), (B, N, H, W)
    path = out_path(args, "attention")
    save_attention_figure(path, generated, maps, labels, normalize=args.normalize,
                          title=title_of(ldm, args, "cross-attention per unit"))
    raw = path.with_suffix(".npy")
    np.save(raw, maps.numpy().astype(np.float32))
    print(f"attention maps written to {path} (raw maps {tuple(maps.shape)} in {raw})")
    return 0
