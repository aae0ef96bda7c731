"""How much do a trained LDM's units lower its diffusion loss, timestep by timestep?

For images of the run's dataset, the EMA U-Net's loss |eps_theta(x_t, t, units) - eps| is measured at fixed
t with each image's own units, and again with the units of another image of the batch (the batch rolled by
one). The difference is what the conditioning is worth at that t: near zero where the U-Net does not use
the units (or cannot yet), large where it reads them. The same noise is used for both.

    python benchmarks/conditioning_gap.py runs/quickstart
    python benchmarks/conditioning_gap.py runs/quickstart/checkpoints/step_0000700 --num-images 512 --json gap.json

Prints a table; ``--json`` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


@torch.no_grad()
def conditioning_gap(model, images: torch.Tensor, timesteps, generator: torch.Generator):
    """Rows (t, loss with own units, loss with another image's units, gap) for ``images`` (B, 3, R, R), by
    the model's own (unweighted) diffusion loss; ``model`` is a LatentDiffusion in eval mode (EMA U-Net)."""
    latents = model.latents(images)
    units = model.encode(images)
    other = units.roll(1, dims=0)
    rows = []
    for t0 in timesteps:
        seed = int(torch.randint(0, 2 ** 62, (), generator=generator))  # the same noise for both conditionings
        own, shuffled = (float(model.denoising_loss(latents, u, t=int(t0), weighted=False,
                                                    generator=torch.Generator(latents.device).manual_seed(seed)))
                         for u in (units, other))
        rows.append({"t": int(t0), "own": own, "shuffled": shuffled, "gap": shuffled - own})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="LDM run folder or checkpoint folder")
    p.add_argument("--num-images", type=int, default=256)
    p.add_argument("--timesteps", type=int, nargs="+", default=[0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--data", help="the dataset file, when the run's data.path is elsewhere on this machine")
    args = p.parse_args(argv)

    from ldm_dis.models.ldm import LatentDiffusion
    from ldm_dis.runs import load_run_config
    from ldm_dis.sampling.components import run_dataset

    cfg = load_run_config(args.checkpoint)
    if cfg.model.kind != "ldm":
        raise SystemExit(f"{args.checkpoint}: model.kind={cfg.model.kind!r}; the conditioning gap needs an LDM run")
    bad = [t for t in args.timesteps if not 0 <= t < cfg.model.diffusion.num_train_timesteps]
    if bad:
        raise SystemExit(f"--timesteps {bad}: expected 0 <= t < {cfg.model.diffusion.num_train_timesteps}")
    model = LatentDiffusion.from_pretrained(args.checkpoint, ema=True)
    dataset = run_dataset(cfg, args.data)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(dataset), generator=g)[: args.num_images].tolist()
    images = torch.stack([torch.as_tensor(dataset[i][0]) for i in idx]).float().to(model.device)
    rows = conditioning_gap(model, images, args.timesteps, g)

    print(f"{args.checkpoint}: {len(idx)} images, {cfg.model.diffusion.loss} loss of the EMA U-Net")
    print("| t | own units | another image's units | gap |\n| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['t']} | {r['own']:.4f} | {r['shuffled']:.4f} | {r['gap']:+.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "num_images": len(idx), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
