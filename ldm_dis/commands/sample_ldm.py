"""``ldm-dis sample interchange`` and ``ldm-dis sample interpolate``: DDIM pictures of a trained LDM run
(EMA weights, 100 steps, eta 0 by default). Registered in :mod:`ldm_dis.commands.sample` next to the
VAE baselines' ``traverse`` and ``swap``.

    ldm-dis sample interchange --checkpoint runs/quickstart --out interchange.png --pairs 6
    ldm-dis sample interpolate --checkpoint runs/quickstart --out interpolate.png --pairs 3 --num 8

``interchange`` (paper Fig. 3, 8): one column per (source, target) pair; rows: source, target, the image
generated from the source units, then one row per unit i with unit i from the target, labelled with the
factor the unit matches best (highest NMI over ``--nmi-images`` images). One x_T is drawn from ``--seed``
and shared by every panel of the grid, so panels differ only by their units.

``interpolate`` (paper D.3, Fig. 6): one row per pair, all units interpolated linearly from image a to
image b in ``--num`` panels; one x_T per grid, as above.
"""

from __future__ import annotations

import argparse


def add_ldm_parsers(sub) -> None:
    """Add ``interchange`` and ``interpolate`` to the ``sample`` command's sub-parsers."""
    from ldm_dis.commands.picture_args import add_common, add_nmi_images

    parser = sub.add_parser("interchange", help="latent interchange grid of an LDM run", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(parser)
    add_nmi_images(parser)
    parser.add_argument("--pairs", type=int, default=6, help="(source, target) pairs: columns of the grid")
    parser.set_defaults(func=interchange)

    parser = sub.add_parser("interpolate", help="latent interpolation strips of an LDM run", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(parser)
    parser.add_argument("--pairs", type=int, default=3, help="image pairs: rows of the picture")
    parser.add_argument("--num", type=int, default=8, help="panels per strip, both ends included")
    parser.set_defaults(func=interpolate)


def interchange(args) -> int:
    from ldm_dis.commands.picture_args import labels_for_units, out_path, title_of
    from ldm_dis.sampling.components import dataset_images, load_ldm_components
    from ldm_dis.viz.interchange_grid import save_interchange_grid

    ldm = load_ldm_components(args.checkpoint, args.data)
    images, _ = dataset_images(ldm.dataset, 2 * args.pairs, args.seed, ldm.device)
    sources, targets = images[:args.pairs], images[args.pairs:]
    units = ldm.encode(images)  # (2P, N, D)
    labels = labels_for_units(ldm, args)
    panels = ldm.model.interchange(units[:args.pairs], units[args.pairs:], ldm.model.noise(args.seed),
                                   steps=args.steps, eta=args.eta, batch_size=args.batch_size)
    path = save_interchange_grid(out_path(args, "interchange"), sources, targets, panels, labels,
                                 title=title_of(ldm, args))
    print(f"interchange grid written to {path}")
    return 0


def interpolate(args) -> int:
    from ldm_dis.commands.picture_args import out_path, title_of
    from ldm_dis.sampling.components import dataset_images, load_ldm_components
    from ldm_dis.viz.interchange_grid import save_interpolation_grid

    ldm = load_ldm_components(args.checkpoint, args.data)
    images, _ = dataset_images(ldm.dataset, 2 * args.pairs, args.seed, ldm.device)
    first, second = images[:args.pairs], images[args.pairs:]
    units = ldm.encode(images)
    strips = ldm.model.interpolate(units[:args.pairs], units[args.pairs:], ldm.model.noise(args.seed), num=args.num,
                                   steps=args.steps, eta=args.eta, batch_size=args.batch_size)
    path = save_interpolation_grid(out_path(args, "interpolate"), first, second, strips,
                                   title=title_of(ldm, args))
    print(f"interpolation written to {path}")
    return 0
