"""``ldm-dis import disdis CKPT OUT``: a model trained by the released dis-dis code as a saved model folder."""

from __future__ import annotations

DESCRIPTION = """Bring checkpoints of the reference code into ldm_dis.

    ldm-dis import disdis --gaussians gaussian/gaussian-epoch=000123.npz epoch=000123.ckpt imported/shapes3d

ldm-dis import WHAT --help describes each source. (A VQ-GAN of the taming/CompVis code needs no import:
point model.first_stage.checkpoint at its .ckpt.)
"""

DISDIS = """A latent diffusion model of the released dis-dis code (youngjun-jun/dis-dis) as a saved model folder.

    ldm-dis import disdis --gaussians gaussian/gaussian-epoch=000123.npz epoch=000123.ckpt imported/shapes3d
    ldm-dis import disdis last.ckpt imported/plain                 # no anchors: model.bottleneck.kind=none
    ldm-dis import disdis --config shapes3d.yaml --gaussians G.npz last.ckpt imported/shapes3d
    ldm-dis import disdis last.ckpt imported/small model.unet.num_heads=4

CKPT is the Lightning .ckpt of the run (its U-Net, EMA U-Net, feature extractor, VQ-GAN first stage, latent
scale and noise schedule); --gaussians is the Gaussian file the run wrote at the same epoch
(LOG_DIR/gaussian/gaussian-epoch=NNNNNN.npz), which becomes DyGA's anchors with the released alignment.
Without --config the architecture is read from the file's shapes and KEY=VALUE sets what the weights do
not say (model.unet.num_heads, 8 in the released configs; dropout rates); with --config (read under
protocol: released, KEY=VALUE applied), a config that builds another architecture is an error listing the
keys to change.
The file is read without running any code from it (torch.load with weights_only). OUT receives
model_config.json and model.safetensors, which LatentDiffusion.from_pretrained(OUT) opens, and config.yaml,
whose data section (data.name=... data.path=... as KEY=VALUE, or from --config) the picture commands use:
ldm-dis sample interchange OUT, ldm-dis attention OUT.
"""


def add_parser(subparsers, name: str, help_text: str) -> None:
    from ldm_dis.commands.arguments import add_command_parser

    parser = add_command_parser(subparsers, name, help_text, DESCRIPTION)
    sub = parser.add_subparsers(dest="import_command", metavar="WHAT", required=True)
    disdis = add_command_parser(sub, "disdis", "a dis-dis latent diffusion checkpoint and its Gaussian file", DISDIS)
    disdis.add_argument("ckpt", metavar="CKPT", help="the released code's Lightning .ckpt")
    disdis.add_argument("out", metavar="OUT", help="folder for the saved model")
    disdis.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config values the weights do not fix")
    disdis.add_argument("--gaussians", default=None, metavar="NPZ",
                        help="the run's gaussian-epoch=NNNNNN.npz (default: none, the units go unaligned)")
    disdis.add_argument("--config", default=None, help="a config the checkpoint must fit (a path or a shipped name)")
    disdis.add_argument("--live", action="store_true", help="import the live U-Net instead of its EMA")
    disdis.add_argument("--overwrite", action="store_true", help="replace OUT's model files if they exist")
    disdis.set_defaults(func=run_disdis)


def run_disdis(args) -> int:
    from pathlib import Path

    from ldm_dis.config.loading import to_yaml
    from ldm_dis.errors import UserInputError
    from ldm_dis.models.disdis_import import build_disdis, disdis_config, read_disdis
    from ldm_dis.models.pretrained import is_saved_model
    from ldm_dis.runs import CONFIG_FILE

    out = Path(args.out)
    if is_saved_model(out) and not args.overwrite:
        raise UserInputError(f"{out} already holds a saved model; pass --overwrite to replace it")
    cfg = None
    if args.config is not None:
        from ldm_dis.config.loading import load_config

        cfg = load_config(args.config, ["protocol=released", *args.overrides])
    files = read_disdis(args.ckpt, args.gaussians)
    cfg = disdis_config(files, cfg, args.overrides if cfg is None else ())
    model = build_disdis(files, cfg, ema=not args.live)
    model.save_pretrained(out)
    (out / CONFIG_FILE).write_text(to_yaml(cfg))  # the data section, for the picture commands
    anchors = "DyGA anchors from the Gaussian file" if args.gaussians else "no anchors (model.bottleneck.kind=none)"
    print(f"{model.weights['unet']} U-Net, {anchors}: saved to {out}")
    return 0
