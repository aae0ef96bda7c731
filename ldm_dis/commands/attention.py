"""Cross-attention heat maps of each latent unit over generated images (paper Fig. 4, 9, 10; the DAAM method).

    ldm-dis attention runs/quickstart
    ldm-dis attention runs/quickstart --images 6 --steps 100 --out attention6.png

Each picture row starts from one dataset image: its units generate an image with DDIM (EMA weights), and
for every unit the cross-attention it receives is averaged over heads, upsampled to the image size and
averaged over all cross-attention layers and all DDIM steps. The row shows the generated image, then one
heat map per unit, titled with the unit's best-matching factor (highest NMI) and its share of the
image's attention.

Colours show attention relative to uniform attention: at every pixel the N units' attention sums to 1,
so 1 (one N-th each) means the unit is no more attended there than any other; 2 means twice that. One
colour scale per row (--scale row) or for the whole figure (--scale all), with its colour bar.

The raw maps, float32 (images, units, H, W), each pixel summing to 1 over units, are saved next to the
PNG as .npy (same name).
"""

from __future__ import annotations

DEFAULT_IMAGES = 4  # the quickstart's --images


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.picture_args import add_common, add_nmi_images

    parser = add_command_parser(subparsers, name, help_text, __doc__)
    add_common(parser, "attention", seed_help="chooses the dataset images and the initial noise")
    add_nmi_images(parser)
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="generated images: rows of the picture")
    parser.add_argument("--scale", choices=["row", "all"], default="row",
                        help="one colour scale per image (row) or for the whole figure (all)")
    parser.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import torch

    from ldm_dis.commands.arguments import check_writable
    from ldm_dis.commands.picture_args import ddim_settings, labels_for_units, out_path, title_of
    from ldm_dis.sampling.components import dataset_images, load_ldm_components
    from ldm_dis.viz.attention import save_attention_figure

    path = out_path(args)
    raw = check_writable(path.with_suffix(".npy"), args)
    ldm = load_ldm_components(args.run, args.data)
    steps, eta = ddim_settings(ldm, args)
    images, _ = dataset_images(ldm.dataset, args.images, args.seed, ldm.device)
    units = ldm.encode(images)
    labels = labels_for_units(ldm, args)
    generated, maps = [], []
    for start in range(0, len(units), args.batch_size):
        batch = units[start:start + args.batch_size]
        batch_images, batch_maps = ldm.model.attention_maps(batch, ldm.model.noise(args.seed + start, len(batch)),
                                                            steps=steps, eta=eta)
        generated.append(batch_images.cpu())
        maps.append(batch_maps.cpu())
    generated, maps = torch.cat(generated), torch.cat(maps)  # (B, 3, H, W), (B, N, H, W)
    save_attention_figure(path, generated, maps, labels, scale=args.scale,
                          title=title_of(ldm, args, "cross-attention per unit"))
    np.save(raw, maps.numpy().astype(np.float32))
    print(f"attention maps written to {path} (raw maps {tuple(maps.shape)} in {raw})")
    return 0
