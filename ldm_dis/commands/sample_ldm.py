"""``ldm-dis sample interchange`` and ``ldm-dis sample interpolate``: DDIM pictures of a trained LDM run."""

from __future__ import annotations

DEFAULT_PAIRS = 4  # the quickstart's --images

INTERCHANGE = """Latent interchange grid of a trained LDM run (paper Fig. 3, 8), drawn with DDIM (EMA weights).

    ldm-dis sample interchange runs/quickstart
    ldm-dis sample interchange runs/quickstart --pairs 6 --steps 100 --out interchange6.png

One column per (source, target) pair; rows: the source, the target, the image generated from the
source's own units, then one row per unit i, generated from the source's units with unit i taken from
the target. Each unit row is labelled with the factor the unit matches best and that match's NMI
(normalized mutual information between the factor and the unit, 0 to 1, over --nmi-images dataset
images). One initial noise x_T is drawn from --seed and shared by every panel of the grid, so panels
differ only by their units.
"""

INTERPOLATE = """Latent interpolation strips of a trained LDM run (paper D.3, Fig. 6), drawn with DDIM (EMA weights).

    ldm-dis sample interpolate runs/quickstart
    ldm-dis sample interpolate runs/quickstart --pairs 3 --num 8

One row per pair of dataset images (a, b): image a, then --num images generated from all units
interpolated linearly from a's to b's (the column label is b's weight), then image b. One initial noise
x_T is shared by every panel, so panels differ only by their units.
"""


def add_ldm_parsers(sub) -> None:
    """Add ``interchange`` and ``interpolate`` to the ``sample`` command's sub-parsers."""
    from ldm_dis.commands.arguments import add_command_parser
    from ldm_dis.commands.picture_args import add_common, add_nmi_images

    parser = add_command_parser(sub, "interchange", "latent interchange grid of an LDM run", INTERCHANGE)
    add_common(parser, "interchange", seed_help="chooses the dataset images and the initial noise")
    add_nmi_images(parser)
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, help="(source, target) pairs: columns of the grid")
    parser.set_defaults(func=interchange)

    parser = add_command_parser(sub, "interpolate", "latent interpolation strips of an LDM run", INTERPOLATE)
    add_common(parser, "interpolate", seed_help="chooses the dataset images and the initial noise")
    parser.add_argument("--pairs", type=int, default=3, help="image pairs: rows of the picture")
    parser.add_argument("--num", type=int, default=8, help="panels per strip, both ends included")
    parser.set_defaults(func=interpolate)


def interchange(args) -> int:
    from ldm_dis.commands.picture_args import ddim_settings, labels_for_units, out_path, title_of
    from ldm_dis.sampling.components import dataset_images, load_ldm_components
    from ldm_dis.viz.interchange_grid import save_interchange_grid

    path = out_path(args)
    ldm = load_ldm_components(args.run, args.data)
    steps, eta = ddim_settings(ldm, args)
    images, _ = dataset_images(ldm.dataset, 2 * args.pairs, args.seed, ldm.device)
    sources, targets = images[:args.pairs], images[args.pairs:]
    units = ldm.encode(images)  # (2P, N, D)
    labels = labels_for_units(ldm, args)
    panels = ldm.model.interchange(units[:args.pairs], units[args.pairs:], ldm.model.noise(args.seed),
                                   steps=steps, eta=eta, batch_size=args.batch_size)
    save_interchange_grid(path, sources, targets, panels, labels, title=title_of(ldm, args))
    print(f"interchange grid written to {path}")
    return 0


def interpolate(args) -> int:
    from ldm_dis.commands.picture_args import ddim_settings, out_path, title_of
    from ldm_dis.sampling.components import dataset_images, load_ldm_components
    from ldm_dis.viz.interchange_grid import save_interpolation_grid

    path = out_path(args)
    ldm = load_ldm_components(args.run, args.data)
    steps, eta = ddim_settings(ldm, args)
    images, _ = dataset_images(ldm.dataset, 2 * args.pairs, args.seed, ldm.device)
    first, second = images[:args.pairs], images[args.pairs:]
    units = ldm.encode(images)
    strips = ldm.model.interpolate(units[:args.pairs], units[args.pairs:], ldm.model.noise(args.seed), num=args.num,
                                   steps=steps, eta=eta, batch_size=args.batch_size)
    save_interpolation_grid(path, first, second, strips, title=title_of(ldm, args))
    print(f"interpolation written to {path}")
    return 0
