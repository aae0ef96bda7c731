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
import torch.nn.functional as F


@torch.no_grad()
def conditioning_gap(task, images: torch.Tensor, timesteps, generator: torch.Generator, loss_type: str = "l1"):
    """Rows (t, loss with own units, loss with another image's units, gap) for ``images`` (B, 3, R, R)."""
    losses = {"l1": F.l1_loss, "l2": F.mse_loss}  # as diffusion_loss
    if loss_type not in losses:
        raise ValueError(f"loss_type={loss_type!r}: expected 'l1' or 'l2'")
    loss = losses[loss_type]
    latents = task.first_stage.encode(images).float() * task.first_stage.latent_scale
    units = task.encode(images)
    other = units.roll(1, dims=0)
    unet = task.ema_unet.shadow.eval()
    rows = []
    for t0 in timesteps:
        t = torch.full((len(images),), int(t0), dtype=torch.long, device=latents.device)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)  # a CPU generator
        x_t = task.noise_scheduler.add_noise(latents, noise, t)
        own = float(loss(unet(x_t, t, units), noise))
        shuffled = float(loss(unet(x_t, t, other), noise))
        rows.append({"t": int(t0), "own": own, "shuffled": shuffled, "gap": shuffled - own})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="LDM run folder or checkpoint folder")
    p.add_argument("--num-images", type=int, default=256)
    p.add_argument("--timesteps", type=int, nargs="+", default=[0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)

    from ldm_dis.training.checkpoint import load_task_from_checkpoint

    cfg, task = load_task_from_checkpoint(args.checkpoint)
    if cfg.model.kind != "ldm":
        raise SystemExit(f"{args.checkpoint}: model.kind={cfg.model.kind!r}; the conditioning gap needs an LDM run")
    bad = [t for t in args.timesteps if not 0 <= t < cfg.model.diffusion.num_train_timesteps]
    if bad:
        raise SystemExit(f"--timesteps {bad}: expected 0 <= t < {cfg.model.diffusion.num_train_timesteps}")
    from ldm_dis.data import build_dataset

    dataset = build_dataset(cfg.data)
    g = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(dataset), generator=g)[: args.num_images].tolist()
    images = torch.stack([torch.as_tensor(dataset[i][0]) for i in idx]).float().to(task.accelerator.device)
    rows = conditioning_gap(task, images, args.timesteps, g, cfg.model.diffusion.loss)

    print(f"{args.checkpoint}: {len(idx)} images, {cfg.model.diffusion.loss} loss of the EMA U-Net")
    print("| t | own units | another image's units | gap |\n| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['t']} | {r['own']:.4f} | {r['shuffled']:.4f} | {r['gap']:+.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "num_images": len(idx), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
